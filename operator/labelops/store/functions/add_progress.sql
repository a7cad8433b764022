-- add_progress: add what one change did to the progress shard p_shard, the last lock its
-- transaction takes (labelops.store.progress). The functions that count (accept_label,
-- auto_accept, uncount_labels) call it naming the counters they change; the others add 0.
CREATE OR REPLACE FUNCTION add_progress(
    p_shard smallint,
    p_labels bigint DEFAULT 0,
    p_human_labeled bigint DEFAULT 0,
    p_machine_labeled bigint DEFAULT 0,
    p_items_completed bigint DEFAULT 0,
    p_disputed bigint DEFAULT 0,
    p_scored_by_people bigint DEFAULT 0,
    p_gold_answers bigint DEFAULT 0,
    p_withdrawn bigint DEFAULT 0,
    p_excluded bigint DEFAULT 0
) RETURNS void
LANGUAGE sql
SET search_path FROM CURRENT
AS $$
    INSERT INTO progress_shards AS s
        (shard, labels, human_labeled, machine_labeled, items_completed, disputed,
         scored_by_people, gold_answers, withdrawn, excluded)
    VALUES (p_shard, p_labels, p_human_labeled, p_machine_labeled, p_items_completed,
            p_disputed, p_scored_by_people, p_gold_answers, p_withdrawn, p_excluded)
    ON CONFLICT (shard) DO UPDATE
    SET labels = s.labels + EXCLUDED.labels,
        human_labeled = s.human_labeled + EXCLUDED.human_labeled,
        machine_labeled = s.machine_labeled + EXCLUDED.machine_labeled,
        items_completed = s.items_completed + EXCLUDED.items_completed,
        disputed = s.disputed + EXCLUDED.disputed,
        scored_by_people = s.scored_by_people + EXCLUDED.scored_by_people,
        gold_answers = s.gold_answers + EXCLUDED.gold_answers,
        withdrawn = s.withdrawn + EXCLUDED.withdrawn,
        excluded = s.excluded + EXCLUDED.excluded;
$$;
