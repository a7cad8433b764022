-- add_progress: add what a change did to the progress shard p_shard, the last lock its
-- transaction takes (labelops.store.progress). For the functions that change many items at
-- once (auto_accept, uncount_labels); accept_label keeps its own single-label upsert.
CREATE OR REPLACE FUNCTION add_progress(
    p_shard smallint,
    p_labels bigint,
    p_human bigint,
    p_machine bigint,
    p_completed bigint,
    p_withdrawn bigint,
    p_excluded bigint
) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    INSERT INTO progress_shards AS s
        (shard, labels, human_labeled, machine_labeled, items_completed, withdrawn, excluded)
    VALUES (p_shard, p_labels, p_human, p_machine, p_completed, p_withdrawn, p_excluded)
    ON CONFLICT (shard) DO UPDATE
    SET labels = s.labels + EXCLUDED.labels,
        human_labeled = s.human_labeled + EXCLUDED.human_labeled,
        machine_labeled = s.machine_labeled + EXCLUDED.machine_labeled,
        items_completed = s.items_completed + EXCLUDED.items_completed,
        withdrawn = s.withdrawn + EXCLUDED.withdrawn,
        excluded = s.excluded + EXCLUDED.excluded;
$$;
