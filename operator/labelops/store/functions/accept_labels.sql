-- accept_labels: many submissions in one statement and one transaction (group commit).
--
-- The worker collects the submissions that arrive while its previous batch is committing
-- and sends them together (labelops.store.batching): one round trip, one commit and one
-- WAL flush for the lot instead of one each. Element k is accept_label of p_item_ids[k],
-- p_labelers[k], p_values[k], p_origins[k], p_idempotency_keys[k], or, when
-- p_lease_next[k], accept_label_and_claim: the same rules, verdicts and result columns, in
-- the order given, each element seeing what the earlier ones wrote. `element` is k
-- (1-based).
--
-- Why concurrent batches cannot deadlock (with each other, or with single statements):
-- before the first element runs, the batch locks every item it names, in id order, then
-- every labeler's row of the day, in labeler order (the order accept_label takes an item
-- and then a labeler's row). After that its elements wait for nothing: their item and
-- labeler locks are already held, every element bumps the same progress shard (the last
-- lock taken, as everywhere), and the claim parts lock items only with SKIP LOCKED.
--
-- A refusal is a verdict of its element, not an error, so one submission never sinks the
-- others. An error (say, a lost race on an Idempotency-Key) rolls the whole batch back; the
-- worker then retries its elements one by one.
CREATE OR REPLACE FUNCTION accept_labels(
    -- one element per submission:
    p_item_ids text[], p_labelers text[], p_values jsonb[], p_origins text[],
    p_idempotency_keys text[], p_lease_next boolean[],
    -- the same for every element, as accept_label_and_claim takes them:
    p_labels_per_item integer, p_daily_quota integer, p_namespace text, p_campaign text,
    p_shard smallint, p_lease_seconds double precision, p_max_leases integer,
    p_reap_limit integer
) RETURNS SETOF submission_result
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    r submission_result;
    n integer := coalesce(array_length(p_item_ids, 1), 0);
BEGIN
    IF array_length(p_labelers, 1) IS DISTINCT FROM array_length(p_item_ids, 1)
       OR array_length(p_values, 1) IS DISTINCT FROM array_length(p_item_ids, 1)
       OR array_length(p_origins, 1) IS DISTINCT FROM array_length(p_item_ids, 1)
       OR array_length(p_idempotency_keys, 1) IS DISTINCT FROM array_length(p_item_ids, 1)
       OR array_length(p_lease_next, 1) IS DISTINCT FROM array_length(p_item_ids, 1)
    THEN
        RAISE EXCEPTION 'accept_labels: the argument arrays differ in length';
    END IF;

    PERFORM 1 FROM items i WHERE i.external_id = ANY (p_item_ids) ORDER BY i.id FOR UPDATE;
    PERFORM lock_labeler_days(p_labelers);

    FOR k IN 1 .. n LOOP
        IF p_lease_next[k] THEN
            r := accept_label_and_claim(
                p_item_ids[k], p_labelers[k], p_labels_per_item, p_daily_quota, p_values[k],
                p_origins[k], p_idempotency_keys[k], p_namespace, p_campaign, p_shard,
                p_lease_seconds, p_max_leases, p_reap_limit);
        ELSE
            r := accept_label(
                p_item_ids[k], p_labelers[k], p_labels_per_item, p_daily_quota, p_values[k],
                p_origins[k], p_idempotency_keys[k], p_namespace, p_campaign, p_shard);
        END IF;
        r.element := k;
        RETURN NEXT r;
    END LOOP;
END
$$;
