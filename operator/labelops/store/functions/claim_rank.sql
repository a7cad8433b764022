-- claim_rank: where an open item stands in the claim order among the items of its
-- priority (items.claim_rank, index items_open_in_claim_order: priority DESC, claim_rank,
-- id). With model.order priority every item ranks 0, so ingest order (id) decides. With
-- uncertainty: audits first (they calibrate the model), least confident first, in
-- [-2, -1]; then unscored items (the least known), 0, the column's default, so an item
-- ingested without a prediction needs no write; then the others, least confident first,
-- in [1, 2]. One index and one ordered walk serve both orders, so claim_task has one
-- query and no plan that sorts.
CREATE OR REPLACE FUNCTION claim_rank(
    p_audit boolean,
    p_confidence double precision,
    p_order_by text
) RETURNS double precision
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN p_order_by IS DISTINCT FROM 'uncertainty' OR p_confidence IS NULL THEN 0
                WHEN p_audit THEN least(greatest(p_confidence, 0), 1) - 2
                ELSE least(greatest(p_confidence, 0), 1) + 1 END
$$;
