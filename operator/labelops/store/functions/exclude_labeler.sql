-- exclude_labeler: the consequences of a block, applied by the quality job in a
-- transaction of their own. The labeler's counted labels on items not yet complete stop
-- counting (kept, marked 'excluded'; a message with that status goes to the labels topic)
-- and those items reopen; the labeler's live leases go back to the pool. Labels on
-- complete items and gold answers stay as they are.
-- Locks: the items in id order, then the labeler's quality row, then one progress shard.
CREATE OR REPLACE FUNCTION exclude_labeler(p_labeler text, p_shard smallint)
RETURNS integer
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
        SELECT i.id AS item, i.external_id, l.id AS label, l.value, l.ordinal, l.created_at,
               l.status = 'counted' AND NOT l.gold AS counted
        FROM items i
        LEFT JOIN labels l ON l.item_id = i.id AND l.labeler = p_labeler
        WHERE i.id IN (SELECT x.item_id FROM labels x
                       WHERE x.labeler = p_labeler AND x.status = 'counted' AND NOT x.gold
                       UNION
                       SELECT e.item_id FROM leases e
                       WHERE e.labeler = p_labeler AND e.reserved)
          AND i.completed_at IS NULL
        ORDER BY i.id
        FOR UPDATE OF i
    LOOP
        IF r.counted THEN
            UPDATE labels SET status = 'excluded' WHERE id = r.label;
            UPDATE items i SET label_count = i.label_count - 1 WHERE i.id = r.item;
            INSERT INTO outbox (label_id, message_key, message)
            VALUES (r.label, r.external_id,
                    label_message(r.label, r.external_id, p_labeler, 'human', r.value,
                                  r.ordinal, r.created_at, NULL, NULL, false, 'excluded',
                          p.namespace, p.campaign, p.labels_per_item));
            n := n + 1;
        END IF;
        UPDATE items i SET lease_count = i.lease_count - 1
        FROM leases e
        WHERE i.id = r.item AND e.item_id = r.item AND e.labeler = p_labeler AND e.reserved;
        DELETE FROM leases e WHERE e.item_id = r.item AND e.labeler = p_labeler;
    END LOOP;
    UPDATE labeler_quality q SET exclusion_done = true WHERE q.labeler = p_labeler;
    IF n > 0 THEN
        INSERT INTO progress_shards AS s (shard, labels, human_labeled, excluded)
        VALUES (p_shard, -n, -n, n)
        ON CONFLICT (shard) DO UPDATE
        SET labels = s.labels + EXCLUDED.labels,
            human_labeled = s.human_labeled + EXCLUDED.human_labeled,
            excluded = s.excluded + EXCLUDED.excluded;
    END IF;
    RETURN n;
END
$$;
