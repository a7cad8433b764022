-- auto_accept: one machine label each for scored items that a trusted model version's
-- proven threshold covers, completing them without people. Only items that are open, not
-- gold, not audits, and nobody's (no label, no lease: an item leased to a person stays
-- with that person). Candidates: p_item_ids (ingest, right after it applied predictions)
-- or, when that is NULL, up to p_limit pending items of p_version, most confident first
-- (the quality job, when a version's threshold appears or falls).
--
-- Exactly once, racing claims: items are locked (in id order) with SKIP LOCKED and the
-- conditions (auto_acceptable) are checked again on the locked row, so an item a claim
-- holds (or leased a moment ago) is passed over; the labeler 'model:<version>' can label
-- an item once (labels_item_labeler_unique).
-- Locks: items, then one progress shard, as every writer.
CREATE OR REPLACE FUNCTION auto_accept(
    p_item_ids bigint[],
    p_version text,
    p_limit integer,
    p_shard smallint
) RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    r record;
    n integer := 0;
    v_now timestamptz := now();
    v_ids bigint[];
    p campaign_policy;
BEGIN
    SELECT * INTO p FROM campaign_policy;
    IF NOT p.auto_accept THEN
        RETURN 0;
    END IF;
    -- The quality job's candidates: the version's most confident pending items, read
    -- without locks (items_pending_by_version); the loop below locks and checks them again.
    v_ids := coalesce(p_item_ids, ARRAY(
        SELECT i.id FROM items i JOIN model_versions v ON v.version = i.model_version
        WHERE i.model_version = p_version AND auto_acceptable(i, v)
        ORDER BY i.model_confidence DESC
        LIMIT p_limit));
    FOR r IN
        SELECT i.id, i.external_id, i.model_version, i.model_prediction, i.model_confidence,
               i.label_seq
        FROM items i JOIN model_versions v ON v.version = i.model_version
        WHERE i.id = ANY (v_ids) AND auto_acceptable(i, v)
          -- A label this version gave before and that was withdrawn: people decide now.
          AND NOT EXISTS (SELECT 1 FROM labels l
                          WHERE l.item_id = i.id AND l.labeler = 'model:' || i.model_version)
        ORDER BY i.id
        FOR UPDATE OF i SKIP LOCKED
    LOOP
        PERFORM machine_label(r.id, r.external_id, r.model_version, r.model_prediction,
                              r.model_confidence, r.label_seq, v_now, p);
        n := n + 1;
    END LOOP;
    IF n > 0 THEN
        PERFORM add_progress(p_shard, p_labels => n, p_machine_labeled => n,
                             p_items_completed => n);
    END IF;
    RETURN n;
END
$$;
