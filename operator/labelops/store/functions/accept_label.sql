-- accept_label: one submission, found (and locked) by the item's external id; verdicts and
-- columns as submission_result says (next_* and element stay NULL). The label id and
-- created_at come from the database (gen_random_uuid(), now()), and the labels-topic
-- message is built here. The rules are documented in labelops.store.labelstore.
--
-- Locks, in the order every writer takes them: the item, the labeler's row of the day, a
-- progress shard last.
CREATE OR REPLACE FUNCTION accept_label(
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
) RETURNS submission_result
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
    r submission_result;
BEGIN
    r.created_at := now();
    -- Submissions to one item queue here: this lock is what makes exactly-N exact.
    SELECT i.id, i.label_count, i.lease_count, i.completed_at IS NOT NULL
    INTO v_item, v_label_count, v_lease_count, v_completed
    FROM items i WHERE i.external_id = p_item_id
    FOR UPDATE;
    IF v_item IS NULL THEN
        r.verdict := 'not_found';
        RETURN r;
    END IF;

    -- Read under the lock: a concurrent first try with the same key has committed.
    IF p_idempotency_key IS NOT NULL THEN
        SELECT l.id, i.external_id, l.value, l.created_at, l.ordinal
        INTO r.replay_label_id, r.replay_item_id, r.replay_value, r.replay_created_at,
             r.replay_ordinal
        FROM labels l JOIN items i ON i.id = l.item_id
        WHERE l.labeler = p_labeler AND l.idempotency_key = p_idempotency_key;
        IF r.replay_label_id IS NOT NULL THEN
            r.verdict := 'replay';
            RETURN r;
        END IF;
    END IF;

    SELECT true, l.reserved INTO v_has_lease, v_reserved
    FROM leases l WHERE l.item_id = v_item AND l.labeler = p_labeler;
    v_labeled := EXISTS (SELECT 1 FROM labels l
                         WHERE l.item_id = v_item AND l.labeler = p_labeler);

    IF v_labeled THEN
        r.verdict := 'already_labeled';
    ELSIF v_completed OR v_label_count >= p_labels_per_item THEN
        r.verdict := 'item_full';
    ELSIF v_has_lease IS NULL THEN
        r.verdict := 'lease_required';
    -- A lapsed lease still counts when a slot is free that nobody else holds.
    ELSIF NOT v_reserved AND v_label_count + v_lease_count >= p_labels_per_item THEN
        r.verdict := 'lease_expired';
    END IF;
    IF r.verdict IS NOT NULL THEN
        RETURN r;
    END IF;

    INSERT INTO labeler_days AS d (labeler, day, labels)
    VALUES (p_labeler, (now() AT TIME ZONE 'UTC')::date, 1)
    ON CONFLICT (labeler, day) DO UPDATE SET labels = d.labels + 1
    WHERE d.labels < p_daily_quota;
    IF NOT FOUND THEN
        r.verdict := 'per_labeler_daily';
        RETURN r;
    END IF;

    r.label_id := gen_random_uuid();
    r.ordinal := v_label_count + 1;
    INSERT INTO labels AS l (id, item_id, labeler, value, origin, ordinal, idempotency_key,
                             created_at)
    VALUES (r.label_id, v_item, p_labeler, p_value, p_origin, r.ordinal, p_idempotency_key,
            r.created_at);
    -- The message of labelops.store.submissions.label_message, field for field.
    INSERT INTO outbox (label_id, message_key, message)
    VALUES (r.label_id, p_item_id, jsonb_build_object(
        'labelId', r.label_id,
        'campaign', jsonb_build_object('namespace', p_namespace, 'name', p_campaign),
        'itemId', p_item_id,
        'labeler', p_labeler,
        'origin', p_origin,
        'value', p_value,
        'ordinal', r.ordinal,
        'labelsPerItem', p_labels_per_item,
        'createdAt', rfc3339_utc(r.created_at)));
    UPDATE items i
    SET label_count = i.label_count + 1,
        lease_count = i.lease_count - CASE WHEN v_reserved THEN 1 ELSE 0 END,
        completed_at = CASE WHEN r.ordinal >= p_labels_per_item THEN now() END
    WHERE i.id = v_item;
    DELETE FROM leases l WHERE l.item_id = v_item AND l.labeler = p_labeler;
    -- Last: the shard lock is the last one taken, so shards never join a lock cycle.
    INSERT INTO progress_shards AS p
        (shard, labels, human_labeled, machine_labeled, items_completed)
    VALUES (p_shard, 1,
            CASE WHEN p_origin = 'human' THEN 1 ELSE 0 END,
            CASE WHEN p_origin = 'machine' THEN 1 ELSE 0 END,
            CASE WHEN r.ordinal >= p_labels_per_item THEN 1 ELSE 0 END)
    ON CONFLICT (shard) DO UPDATE
    SET labels = p.labels + EXCLUDED.labels,
        human_labeled = p.human_labeled + EXCLUDED.human_labeled,
        machine_labeled = p.machine_labeled + EXCLUDED.machine_labeled,
        items_completed = p.items_completed + EXCLUDED.items_completed;
    r.verdict := 'accepted';
    RETURN r;
END
$$;
