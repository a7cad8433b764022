-- exclude_labeler: the consequences of a block, applied by the quality job in a
-- transaction of its own. The labeler's counted labels on items not yet complete stop
-- counting (uncount_labels 'excluded') and those items reopen; the labeler's leases go
-- back to the pool. Labels on complete items and gold answers stay as they are.
-- Locks: every item it changes first, in id order, then the labeler's quality row, then
-- one progress shard. No new label or lease of the labeler can appear meanwhile: claims
-- and submissions of a blocked labeler are refused.
CREATE OR REPLACE FUNCTION exclude_labeler(p_labeler text, p_shard smallint)
RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    n integer;
BEGIN
    PERFORM 1 FROM items i
    WHERE i.id IN (SELECT x.item_id FROM labels x
                   WHERE x.labeler = p_labeler AND x.status = 'counted' AND NOT x.gold
                   UNION
                   SELECT e.item_id FROM leases e WHERE e.labeler = p_labeler)
    ORDER BY i.id
    FOR UPDATE OF i;
    WITH freed AS (
        DELETE FROM leases e WHERE e.labeler = p_labeler RETURNING e.item_id, e.reserved
    )
    UPDATE items i SET lease_count = i.lease_count - 1
    FROM freed WHERE freed.item_id = i.id AND freed.reserved;
    UPDATE labeler_quality q SET exclusion_done = true WHERE q.labeler = p_labeler;
    n := uncount_labels(p_labeler, 'excluded', NULL, p_shard);
    RETURN n;
END
$$;
