-- withdraw_machine_labels: the brake. A version whose audits fell below target has its
-- machine labels given after p_after (the newest audit of its last passing window; NULL:
-- all of them) withdrawn: the labels stay stored, marked 'withdrawn' (and a message with
-- that status goes to the labels topic), their items reopen for people.
-- Locks: the items in id order, then one progress shard.
CREATE OR REPLACE FUNCTION withdraw_machine_labels(
    p_version text,
    p_after timestamptz,
    p_shard smallint
) RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    r record;
    n integer := 0;
    p campaign_policy;
BEGIN
    SELECT * INTO p FROM campaign_policy;
    FOR r IN
        SELECT l.id, l.item_id, i.external_id, l.value, l.ordinal, l.created_at, l.confidence
        FROM labels l JOIN items i ON i.id = l.item_id
        WHERE l.labeler = 'model:' || p_version AND l.origin = 'machine'
          AND l.status = 'counted' AND (p_after IS NULL OR l.created_at > p_after)
        ORDER BY l.item_id
        FOR UPDATE OF i
    LOOP
        UPDATE labels SET status = 'withdrawn' WHERE id = r.id;
        UPDATE items i
        SET label_count = i.label_count - 1,
            completed_at = NULL,
            machine_labeled = false,
            consolidated_value = NULL,
            consolidated_confidence = NULL
        WHERE i.id = r.item_id;
        INSERT INTO outbox (label_id, message_key, message)
        VALUES (r.id, r.external_id,
                label_message(r.id, r.external_id, 'model:' || p_version, 'machine', r.value,
                              r.ordinal, r.created_at, p_version, r.confidence, false,
                              'withdrawn',
                          p.namespace, p.campaign, p.labels_per_item));
        n := n + 1;
    END LOOP;
    IF n > 0 THEN
        INSERT INTO progress_shards AS s (shard, labels, machine_labeled, items_completed,
                                          withdrawn)
        VALUES (p_shard, -n, -n, -n, n)
        ON CONFLICT (shard) DO UPDATE
        SET labels = s.labels + EXCLUDED.labels,
            machine_labeled = s.machine_labeled + EXCLUDED.machine_labeled,
            items_completed = s.items_completed + EXCLUDED.items_completed,
            withdrawn = s.withdrawn + EXCLUDED.withdrawn;
    END IF;
    RETURN n;
END
$$;
