-- The labelers' rows of today, locked in labeler order (both batch functions below take
-- them before anything their elements do). A labeler's first label or claim of the day
-- creates the row; creating it here (0 labels) changes nothing accept_label or claim_task
-- would decide.
CREATE FUNCTION lock_labeler_days(p_labelers text[]) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO labeler_days AS d (labeler, day, labels)
    SELECT DISTINCT u.labeler, (now() AT TIME ZONE 'UTC')::date, 0
    FROM unnest(p_labelers) AS u(labeler)
    ORDER BY 1
    ON CONFLICT (labeler, day) DO NOTHING;
    PERFORM 1 FROM labeler_days d
    WHERE d.labeler = ANY (p_labelers) AND d.day = (now() AT TIME ZONE 'UTC')::date
    ORDER BY d.labeler
    FOR UPDATE;
END
$$;

REVOKE ALL ON FUNCTION lock_labeler_days(text[]) FROM PUBLIC;

-- accept_labels: many submissions in one statement and one transaction (group commit).
--
-- The worker collects the submissions that arrive while its previous batch is committing
-- and sends them together (labelops.store.batching): one round trip, one commit and one
-- WAL flush for the lot instead of one each. Element k is accept_label (0003) of
-- p_item_ids[k], p_labelers[k], p_values[k], p_origins[k], p_idempotency_keys[k], and
-- when p_lease_next[k] also the labeler's next lease as accept_label_and_claim (0005)
-- takes it: the same rules, verdicts and result columns, in the order given, each
-- element seeing what the earlier ones wrote. `element` is k (1-based).
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
CREATE FUNCTION accept_labels(
    p_item_ids text[],
    p_labelers text[],
    p_values jsonb[],
    p_origins text[],
    p_idempotency_keys text[],
    p_lease_next boolean[],
    p_labels_per_item integer,
    p_daily_quota integer,
    p_namespace text,
    p_campaign text,
    p_shard smallint,
    p_lease_seconds double precision,
    p_max_leases integer,
    p_reap_limit integer
) RETURNS TABLE (
    element integer,
    verdict text,
    label_id uuid,
    created_at timestamptz,
    ordinal integer,
    replay_label_id uuid,
    replay_item_id text,
    replay_value jsonb,
    replay_created_at timestamptz,
    replay_ordinal integer,
    next_verdict text,
    next_labels_today integer,
    next_held integer,
    next_earliest_expiry timestamptz,
    next_clock timestamptz,
    next_item_id text,
    next_payload jsonb,
    next_priority integer,
    next_model_prediction jsonb,
    next_model_confidence double precision,
    next_expires_at timestamptz
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    r record;
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
            SELECT * INTO r FROM accept_label_and_claim(
                p_item_ids[k], p_labelers[k], p_labels_per_item, p_daily_quota, p_values[k],
                p_origins[k], p_idempotency_keys[k], p_namespace, p_campaign, p_shard,
                p_lease_seconds, p_max_leases, p_reap_limit);
            next_verdict := r.next_verdict;
            next_labels_today := r.next_labels_today;
            next_held := r.next_held;
            next_earliest_expiry := r.next_earliest_expiry;
            next_clock := r.next_clock;
            next_item_id := r.next_item_id;
            next_payload := r.next_payload;
            next_priority := r.next_priority;
            next_model_prediction := r.next_model_prediction;
            next_model_confidence := r.next_model_confidence;
            next_expires_at := r.next_expires_at;
        ELSE
            SELECT * INTO r FROM accept_label(
                p_item_ids[k], p_labelers[k], p_labels_per_item, p_daily_quota, p_values[k],
                p_origins[k], p_idempotency_keys[k], p_namespace, p_campaign, p_shard);
            next_verdict := NULL;
            next_labels_today := NULL;
            next_held := NULL;
            next_earliest_expiry := NULL;
            next_clock := NULL;
            next_item_id := NULL;
            next_payload := NULL;
            next_priority := NULL;
            next_model_prediction := NULL;
            next_model_confidence := NULL;
            next_expires_at := NULL;
        END IF;
        element := k;
        verdict := r.verdict;
        label_id := r.label_id;
        created_at := r.created_at;
        ordinal := r.ordinal;
        replay_label_id := r.replay_label_id;
        replay_item_id := r.replay_item_id;
        replay_value := r.replay_value;
        replay_created_at := r.replay_created_at;
        replay_ordinal := r.replay_ordinal;
        RETURN NEXT;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION accept_labels(text[], text[], jsonb[], text[], text[], boolean[], integer,
                                     integer, text, text, smallint, double precision, integer,
                                     integer)
    FROM PUBLIC;

-- claim_tasks: claim_task (0004) for each of p_labelers in one statement and transaction,
-- in the order given (a labeler named twice gets two leases, as with two claims). The
-- claims that arrive while the previous batch commits go together (labelops.store.batching).
--
-- Locks: the labelers' rows of the day first, in labeler order; then each claim_task,
-- which finds its labeler's row held and locks items only with SKIP LOCKED. So a batch
-- waits only for labelers' rows, in one order, while accept_labels waits for labelers'
-- rows (in the same order) only after its items: neither can close a cycle.
CREATE FUNCTION claim_tasks(
    p_labelers text[],
    p_labels_per_item integer,
    p_lease_seconds double precision,
    p_daily_quota integer,
    p_max_leases integer,
    p_reap_limit integer
) RETURNS TABLE (
    element integer,
    verdict text,
    labels_today integer,
    held integer,
    earliest_expiry timestamptz,
    clock timestamptz,
    item_id text,
    payload jsonb,
    priority integer,
    model_prediction jsonb,
    model_confidence double precision,
    expires_at timestamptz
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    r record;
BEGIN
    PERFORM lock_labeler_days(p_labelers);

    FOR k IN 1 .. coalesce(array_length(p_labelers, 1), 0) LOOP
        SELECT * INTO r FROM claim_task(p_labelers[k], p_labels_per_item, p_lease_seconds,
                                        p_daily_quota, p_max_leases, p_reap_limit);
        element := k;
        verdict := r.verdict;
        labels_today := r.labels_today;
        held := r.held;
        earliest_expiry := r.earliest_expiry;
        clock := r.clock;
        item_id := r.item_id;
        payload := r.payload;
        priority := r.priority;
        model_prediction := r.model_prediction;
        model_confidence := r.model_confidence;
        expires_at := r.expires_at;
        RETURN NEXT;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION claim_tasks(text[], integer, double precision, integer, integer, integer)
    FROM PUBLIC;
