-- claim_tasks: claim_task for each of p_labelers in one statement and transaction, in the
-- order given (a labeler named twice gets two leases, as with two claims); `element` is the
-- 1-based position. The claims that arrive while the previous batch commits go together
-- (labelops.store.batching).
--
-- Locks: the labelers' rows of the day first, in labeler order; then each claim_task,
-- which finds its labeler's row held and locks items only with SKIP LOCKED. So a batch
-- waits only for labelers' rows, in one order, while accept_labels waits for labelers'
-- rows (in the same order) only after its items: neither can close a cycle.
CREATE OR REPLACE FUNCTION claim_tasks(
    p_labelers text[],
    p_labels_per_item integer,
    p_lease_seconds double precision,
    p_daily_quota integer,
    p_max_leases integer,
    p_reap_limit integer
) RETURNS SETOF claim_result
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    r claim_result;
BEGIN
    PERFORM lock_labeler_days(p_labelers);

    FOR k IN 1 .. coalesce(array_length(p_labelers, 1), 0) LOOP
        r := claim_task(p_labelers[k], p_labels_per_item, p_lease_seconds, p_daily_quota,
                        p_max_leases, p_reap_limit);
        r.element := k;
        RETURN NEXT r;
    END LOOP;
END
$$;
