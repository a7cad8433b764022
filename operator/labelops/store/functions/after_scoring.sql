-- after_scoring: what follows once predictions were applied to items (ingest calls it in
-- the transaction that wrote them, items still locked): each version is registered (it
-- starts untrusted and is calibrated on its own audits), each open scored item is decided
-- an audit or not for its version, from its id and the version alone
-- (labelops.quality.sampling.audit_hash_sql, compared in a unit test), and what a trusted
-- version's threshold covers is auto-accepted. Returns the items auto-accepted.
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
    SET audit = p.audit_rate > 0
                AND (('x' || substr(md5('labelops/audit' || chr(31) || (i.external_id) || chr(31) || (i.model_version)), 1, 13))::bit(52)::bigint::float8 / 4503599627370496::float8) < p.audit_rate,
        model_scored_at = now()
    FROM campaign_policy p
    WHERE i.id = ANY (p_item_ids) AND i.model_version IS NOT NULL AND i.completed_at IS NULL;
    RETURN auto_accept(p_item_ids, NULL, NULL, p_shard);
END
$$;
