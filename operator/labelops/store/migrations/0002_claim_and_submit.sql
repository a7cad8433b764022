-- Claiming a task and accepting a label, as functions of the campaign's schema.
--
-- Why in the database: each is one statement the worker sends (in autocommit mode), so it
-- is one round trip and one transaction, and every row lock it takes is released by the
-- server itself at the end of the call. No lock is ever held while the worker's thread
-- waits for the network or for its turn to run, which under load is what makes other
-- labelers queue. Plans of the statements inside are cached per connection.
--
-- Every statement below gets a fresh snapshot (READ COMMITTED, volatile functions), so
-- what is read after a lock was granted includes everything committed before.
--
-- The rules are documented in labelops.store.labelstore; the worker turns each verdict
-- into an error message. SET search_path FROM CURRENT pins the campaign's schema, which
-- the migration runner has set.

-- verdict: 'claimed' (item columns and expires_at set), 'none' (nothing to claim),
-- 'per_labeler_daily' (today's labels reached the quota), 'max_leases_per_labeler',
-- 'daily_room' (today's labels + held leases reached the quota).
CREATE FUNCTION claim_task(
    p_labeler text,
    p_labels_per_item integer,
    p_lease_seconds double precision,
    p_daily_quota integer,
    p_max_leases integer,
    p_reap_limit integer
) RETURNS TABLE (
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
    v_item bigint;
BEGIN
    clock := now();
    -- The labeler's row of today is the per-labeler lock: it serialises one labeler's
    -- claims (exact maxLeasesPerLabeler) with their submissions.
    INSERT INTO labeler_days AS d (labeler, day, labels)
    VALUES (p_labeler, (now() AT TIME ZONE 'UTC')::date, 0)
    ON CONFLICT (labeler, day) DO UPDATE SET labels = d.labels
    RETURNING d.labels INTO labels_today;

    SELECT count(*), min(l.expires_at) INTO held, earliest_expiry
    FROM leases l
    WHERE l.labeler = p_labeler AND l.reserved AND l.expires_at > now();

    IF labels_today >= p_daily_quota THEN
        verdict := 'per_labeler_daily';
    ELSIF held >= p_max_leases THEN
        verdict := 'max_leases_per_labeler';
    ELSIF labels_today + held >= p_daily_quota THEN
        verdict := 'daily_room';  -- no task the labeler could not submit today
    END IF;
    IF verdict IS NOT NULL THEN
        RETURN NEXT;
        RETURN;
    END IF;

    -- Give the slots of expired leases back. Items are locked first, as everywhere, and
    -- with SKIP LOCKED: an item busy elsewhere is reaped by a later claim.
    WITH expired AS (
        SELECT i.id FROM items i
        WHERE i.id IN (SELECT x.item_id FROM leases x
                       WHERE x.reserved AND x.expires_at <= now()
                       ORDER BY x.expires_at LIMIT p_reap_limit)
        ORDER BY i.id
        FOR UPDATE OF i SKIP LOCKED
    ), unreserved AS (
        UPDATE leases l SET reserved = false FROM expired
        WHERE l.item_id = expired.id AND l.reserved AND l.expires_at <= now()
        RETURNING l.item_id
    )
    UPDATE items i SET lease_count = i.lease_count - freed.n
    FROM (SELECT u.item_id, count(*) AS n FROM unreserved u GROUP BY u.item_id) freed
    WHERE i.id = freed.item_id;

    -- The first open item, in priority order, with a free slot this labeler has not
    -- labeled, does not hold and did not skip. items_open_by_priority serves the order;
    -- SKIP LOCKED lets concurrent claimers pass each other.
    SELECT i.id, i.external_id, i.payload, i.priority, i.model_prediction, i.model_confidence
    INTO v_item, item_id, payload, priority, model_prediction, model_confidence
    FROM items i
    WHERE i.completed_at IS NULL
      AND i.label_count + i.lease_count < p_labels_per_item
      AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.item_id = i.id AND l.labeler = p_labeler)
      AND NOT EXISTS (SELECT 1 FROM leases l
                      WHERE l.item_id = i.id AND l.labeler = p_labeler AND l.reserved)
      AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.item_id = i.id AND s.labeler = p_labeler)
    ORDER BY i.priority DESC, i.id
    LIMIT 1
    FOR UPDATE OF i SKIP LOCKED;
    IF v_item IS NULL THEN
        verdict := 'none';
        RETURN NEXT;
        RETURN;
    END IF;

    -- A lapsed (unreserved) lease row of this labeler on the item is reused.
    INSERT INTO leases AS l (item_id, labeler, claimed_at, expires_at, reserved)
    VALUES (v_item, p_labeler, now(), now() + make_interval(secs => p_lease_seconds), true)
    ON CONFLICT ON CONSTRAINT leases_pkey DO UPDATE
    SET claimed_at = EXCLUDED.claimed_at, expires_at = EXCLUDED.expires_at, reserved = true
    RETURNING l.expires_at INTO expires_at;
    UPDATE items SET lease_count = items.lease_count + 1 WHERE items.id = v_item;
    verdict := 'claimed';
    RETURN NEXT;
END
$$;

-- verdict: 'accepted' (ordinal set), 'replay' (replay_* set: a label stored earlier under
-- this Idempotency-Key), 'already_labeled', 'item_full', 'lease_required', 'lease_expired',
-- 'per_labeler_daily'. p_message is the labels-topic message without "ordinal", which is
-- added here.
CREATE FUNCTION submit_label(
    p_item bigint,
    p_labeler text,
    p_labels_per_item integer,
    p_daily_quota integer,
    p_label_id uuid,
    p_value jsonb,
    p_origin text,
    p_idempotency_key text,
    p_created_at timestamptz,
    p_message jsonb,
    p_shard smallint
) RETURNS TABLE (
    verdict text,
    ordinal integer,
    replay_label_id uuid,
    replay_item_id text,
    replay_value jsonb,
    replay_created_at timestamptz,
    replay_ordinal integer
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_external_id text;
    v_label_count integer;
    v_lease_count integer;
    v_completed boolean;
    v_has_lease boolean;
    v_reserved boolean;
    v_labeled boolean;
BEGIN
    -- Submissions to one item queue here: this lock is what makes exactly-N exact.
    SELECT i.external_id, i.label_count, i.lease_count, i.completed_at IS NOT NULL
    INTO v_external_id, v_label_count, v_lease_count, v_completed
    FROM items i WHERE i.id = p_item
    FOR UPDATE;

    -- Read under the lock: a concurrent first try with the same key has committed.
    IF p_idempotency_key IS NOT NULL THEN
        SELECT l.id, i.external_id, l.value, l.created_at, l.ordinal
        INTO replay_label_id, replay_item_id, replay_value, replay_created_at, replay_ordinal
        FROM labels l JOIN items i ON i.id = l.item_id
        WHERE l.labeler = p_labeler AND l.idempotency_key = p_idempotency_key;
        IF replay_label_id IS NOT NULL THEN
            verdict := 'replay';
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;

    SELECT true, l.reserved INTO v_has_lease, v_reserved
    FROM leases l WHERE l.item_id = p_item AND l.labeler = p_labeler;
    v_labeled := EXISTS (SELECT 1 FROM labels l
                         WHERE l.item_id = p_item AND l.labeler = p_labeler);

    IF v_labeled THEN
        verdict := 'already_labeled';
    ELSIF v_completed OR v_label_count >= p_labels_per_item THEN
        verdict := 'item_full';
    ELSIF v_has_lease IS NULL THEN
        verdict := 'lease_required';
    -- A lapsed lease still counts when a slot is free that nobody else holds.
    ELSIF NOT v_reserved AND v_label_count + v_lease_count >= p_labels_per_item THEN
        verdict := 'lease_expired';
    END IF;
    IF verdict IS NOT NULL THEN
        RETURN NEXT;
        RETURN;
    END IF;

    INSERT INTO labeler_days AS d (labeler, day, labels)
    VALUES (p_labeler, (now() AT TIME ZONE 'UTC')::date, 1)
    ON CONFLICT (labeler, day) DO UPDATE SET labels = d.labels + 1
    WHERE d.labels < p_daily_quota;
    IF NOT FOUND THEN
        verdict := 'per_labeler_daily';
        RETURN NEXT;
        RETURN;
    END IF;

    ordinal := v_label_count + 1;
    INSERT INTO labels (id, item_id, labeler, value, origin, ordinal, idempotency_key, created_at)
    VALUES (p_label_id, p_item, p_labeler, p_value, p_origin, ordinal, p_idempotency_key,
            p_created_at);
    INSERT INTO outbox (label_id, message_key, message)
    VALUES (p_label_id, v_external_id, p_message || jsonb_build_object('ordinal', ordinal));
    UPDATE items i
    SET label_count = i.label_count + 1,
        lease_count = i.lease_count - CASE WHEN v_reserved THEN 1 ELSE 0 END,
        completed_at = CASE WHEN ordinal >= p_labels_per_item THEN now() END
    WHERE i.id = p_item;
    DELETE FROM leases l WHERE l.item_id = p_item AND l.labeler = p_labeler;
    -- Last: the shard lock is the last one taken, so shards never join a lock cycle.
    INSERT INTO progress_shards AS p
        (shard, labels, human_labeled, machine_labeled, items_completed)
    VALUES (p_shard, 1,
            CASE WHEN p_origin = 'human' THEN 1 ELSE 0 END,
            CASE WHEN p_origin = 'machine' THEN 1 ELSE 0 END,
            CASE WHEN ordinal >= p_labels_per_item THEN 1 ELSE 0 END)
    ON CONFLICT (shard) DO UPDATE
    SET labels = p.labels + EXCLUDED.labels,
        human_labeled = p.human_labeled + EXCLUDED.human_labeled,
        machine_labeled = p.machine_labeled + EXCLUDED.machine_labeled,
        items_completed = p.items_completed + EXCLUDED.items_completed;
    verdict := 'accepted';
    RETURN NEXT;
END
$$;

-- item_found: the item exists; had_lease: the labeler held a lease on it (then removed, its
-- slot back in the pool if it still held one). The skip is remembered either way, so
-- claim_task does not offer the item to this labeler again.
CREATE FUNCTION release_task(p_item_id text, p_labeler text)
RETURNS TABLE (item_found boolean, had_lease boolean)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_item bigint;
    v_reserved boolean;
BEGIN
    SELECT i.id INTO v_item FROM items i WHERE i.external_id = p_item_id FOR UPDATE;
    item_found := v_item IS NOT NULL;
    IF NOT item_found THEN
        had_lease := false;
        RETURN NEXT;
        RETURN;
    END IF;
    DELETE FROM leases l WHERE l.item_id = v_item AND l.labeler = p_labeler
    RETURNING l.reserved INTO v_reserved;
    had_lease := v_reserved IS NOT NULL;
    IF v_reserved THEN
        UPDATE items i SET lease_count = i.lease_count - 1 WHERE i.id = v_item;
    END IF;
    INSERT INTO skips (item_id, labeler) VALUES (v_item, p_labeler) ON CONFLICT DO NOTHING;
    RETURN NEXT;
END
$$;

-- The functions act with the caller's privileges; only the campaign's role needs them.
REVOKE ALL ON FUNCTION claim_task(text, integer, double precision, integer, integer, integer)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION submit_label(bigint, text, integer, integer, uuid, jsonb, text, text,
                                    timestamptz, jsonb, smallint)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION release_task(text, text) FROM PUBLIC;
