-- after_scoring: what follows once predictions were applied to items by a writer that set
-- only the model columns (items still locked, same transaction): each version is registered
-- (it starts untrusted and is calibrated on its own audits), each open scored item is decided
-- an audit or not for its version, from its id and the version alone
-- (labelops.quality.sampling.audit_hash_sql, compared in a unit test) and placed in the
-- claim order (claim_rank), and what a trusted version's threshold covers is auto-accepted.
-- Returns the items auto-accepted. Ingest takes the same decisions inside the statements
-- that score items (labelops.store.items: one write per item), then calls auto_accept; a
-- test holds its decisions to this function's (after_scoring then writes no row).
CREATE OR REPLACE FUNCTION after_scoring(p_item_ids bigint[], p_shard smallint)
RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO model_versions (version)
    SELECT DISTINCT i.model_version FROM items i
    WHERE i.id = ANY (p_item_ids) AND i.model_version IS NOT NULL
    ORDER BY 1
    ON CONFLICT (version) DO NOTHING;
    UPDATE items i
    SET audit = d.audit,
        claim_rank = claim_rank(d.audit, i.model_confidence, d.order_by),
        model_scored_at = now()
    FROM (
        SELECT x.id, p.order_by,
               p.audit_rate > 0
               AND (('x' || substr(md5('labelops/audit' || chr(31) || (x.external_id) || chr(31) || (x.model_version)), 1, 13))::bit(52)::bigint::float8 / 4503599627370496::float8) < p.audit_rate
               AS audit
        FROM items x CROSS JOIN campaign_policy p
        WHERE x.id = ANY (p_item_ids) AND x.model_version IS NOT NULL
          AND x.completed_at IS NULL
    ) d
    WHERE i.id = d.id
      -- A row that already holds all three (ingest's own write set model_scored_at in
      -- this transaction, audit and rank unchanged) is not written a second time.
      AND (i.audit, i.claim_rank, i.model_scored_at) IS DISTINCT FROM
          (d.audit, claim_rank(d.audit, i.model_confidence, d.order_by), now());
    RETURN auto_accept(p_item_ids, NULL, NULL, p_shard);
END
$$;
