-- accept_label: submit_label (0002) taking the item's external id, so a submission whose
-- label the worker could already validate is one statement and one round trip.
--
-- What it adds to submit_label: the item is found (and locked) by its external id, with
-- verdict 'not_found' when there is none; the label id and created_at come from the
-- database (gen_random_uuid(), now()); and the labels-topic message is built here rather
-- than sent as JSON by the worker. The decision and the writes are those of submit_label,
-- in the same order and under the same locks (see 0002 and labelops.store.labelstore).
--
-- submit_label stays: worker pods of the previous release call it during a rolling update.

-- RFC 3339 in UTC, the way the worker writes times (labelops.worker.wire.timestamp):
-- microseconds only when there are any, and a Z.
-- STABLE, not IMMUTABLE: to_char reads settings.
CREATE FUNCTION rfc3339_utc(p_moment timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT to_char(p_moment AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN extract(microseconds FROM p_moment)::bigint % 1000000 = 0 THEN ''
                ELSE to_char(p_moment AT TIME ZONE 'UTC', '.US') END
        || 'Z'
$$;

-- verdict: 'accepted' (label_id, ordinal set), 'replay' (replay_* set: a label stored
-- earlier under this Idempotency-Key), 'not_found', 'already_labeled', 'item_full',
-- 'lease_required', 'lease_expired', 'per_labeler_daily'. created_at is always set: the
-- accepted label's time, or the clock a refusal's Retry-After is computed from.
CREATE FUNCTION accept_label(
    p_item_id text,
    p_labeler text,
    p_labels_per_item integer,
    p_daily_quota integer,
    p_value jsonb,
    p_origin text,
    p_idempotency_key text,
    p_namespace text,
    p_campaign text,
    p_shard smallint
) RETURNS TABLE (
    verdict text,
    label_id uuid,
    created_at timestamptz,
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
    v_item bigint;
    v_label_count integer;
    v_lease_count integer;
    v_completed boolean;
    v_has_lease boolean;
    v_reserved boolean;
    v_labeled boolean;
BEGIN
    created_at := now();
    -- Submissions to one item queue here: this lock is what makes exactly-N exact.
    SELECT i.id, i.label_count, i.lease_count, i.completed_at IS NOT NULL
    INTO v_item, v_label_count, v_lease_count, v_completed
    FROM items i WHERE i.external_id = p_item_id
    FOR UPDATE;
    IF v_item IS NULL THEN
        verdict := 'not_found';
        RETURN NEXT;
        RETURN;
    END IF;

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
    FROM leases l WHERE l.item_id = v_item AND l.labeler = p_labeler;
    v_labeled := EXISTS (SELECT 1 FROM labels l
                         WHERE l.item_id = v_item AND l.labeler = p_labeler);

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

    label_id := gen_random_uuid();
    ordinal := v_label_count + 1;
    INSERT INTO labels AS l (id, item_id, labeler, value, origin, ordinal, idempotency_key,
                             created_at)
    VALUES (label_id, v_item, p_labeler, p_value, p_origin, ordinal, p_idempotency_key,
            created_at);
    -- The message of labelops.store.submissions.label_message, field for field.
    INSERT INTO outbox (label_id, message_key, message)
    VALUES (label_id, p_item_id, jsonb_build_object(
        'labelId', label_id,
        'campaign', jsonb_build_object('namespace', p_namespace, 'name', p_campaign),
        'itemId', p_item_id,
        'labeler', p_labeler,
        'origin', p_origin,
        'value', p_value,
        'ordinal', ordinal,
        'labelsPerItem', p_labels_per_item,
        'createdAt', rfc3339_utc(created_at)));
    UPDATE items i
    SET label_count = i.label_count + 1,
        lease_count = i.lease_count - CASE WHEN v_reserved THEN 1 ELSE 0 END,
        completed_at = CASE WHEN ordinal >= p_labels_per_item THEN now() END
    WHERE i.id = v_item;
    DELETE FROM leases l WHERE l.item_id = v_item AND l.labeler = p_labeler;
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

REVOKE ALL ON FUNCTION accept_label(text, text, integer, integer, jsonb, text, text, text, text,
                                    smallint)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION rfc3339_utc(timestamptz) FROM PUBLIC;
