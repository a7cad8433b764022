-- accept_label: one submission, found (and locked) by the item's external id; verdicts and
-- columns as submission_result says (next_* and element stay NULL). The label id and
-- created_at come from the database (gen_random_uuid(), now()), and the labels-topic
-- message is built here. The rules are documented in labelops.store.labelstore.
--
-- With the campaign's policy (campaign_policy): a blocked labeler's submission is refused
-- ('blocked'); a gold item's answer is scored against its gold value in the labeler's
-- quality row (gold items never complete and count toward no target); an item completes
-- at exactly labelsPerItem labels, or, with adaptive overlap, when the posterior of its
-- leading answer (item_consensus) reaches quality.overlap.agreement with at least min
-- labels, else at max as disputed, else it takes one more label (label_cap). A completed
-- item keeps its consolidated answer; a completed audit records whether people agreed
-- with the model (audits). Every label carries its lineage (generation, spec digest).
--
-- Locks, in the order every writer takes them: the item, the labeler's row of the day, the
-- labeler's quality row, a progress shard last.
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
    v_label_cap integer;
    v_label_seq integer;
    v_gold jsonb;
    v_audit boolean;
    v_version text;
    v_prediction jsonb;
    v_confidence double precision;
    v_cap integer;
    v_answer jsonb;
    v_complete boolean := false;
    v_disputed boolean := false;
    v_consensus jsonb;
    v_posterior double precision;
    v_completed boolean;
    v_has_lease boolean;
    v_reserved boolean;
    v_labeled boolean;
    v_label labels;
    r submission_result;
    p campaign_policy;
BEGIN
    r.created_at := now();
    SELECT * INTO p FROM campaign_policy;
    -- Submissions to one item queue here: this lock is what makes exactly-N exact.
    SELECT i.id, i.label_count, i.lease_count, i.completed_at IS NOT NULL, i.label_cap,
           i.label_seq, i.gold_value, i.audit, i.model_version, i.model_prediction,
           i.model_confidence
    INTO v_item, v_label_count, v_lease_count, v_completed, v_label_cap, v_label_seq, v_gold,
         v_audit, v_version, v_prediction, v_confidence
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
    -- Gold items have no cap; the others take labelsPerItem, overlap.min, or label_cap.
    v_cap := CASE WHEN v_gold IS NOT NULL THEN 2147483647
                  WHEN v_label_cap IS NOT NULL THEN v_label_cap
                  WHEN p.overlap_min IS NOT NULL AND p.num_classes IS NOT NULL
                  THEN p.overlap_min
                  ELSE p_labels_per_item END;

    r.refusal := labeler_block_reason(p_labeler, p);
    IF r.refusal IS NOT NULL THEN
        r.verdict := 'blocked';
    ELSIF v_labeled THEN
        r.verdict := 'already_labeled';
    ELSIF v_completed OR v_label_count >= v_cap THEN
        r.verdict := 'item_full';
    ELSIF v_has_lease IS NULL THEN
        r.verdict := 'lease_required';
    -- A lapsed lease still counts when a slot is free that nobody else holds.
    ELSIF NOT v_reserved AND v_label_count + v_lease_count >= v_cap THEN
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
    r.ordinal := v_label_seq + 1;
    v_answer := p_value -> p.answer_key;
    INSERT INTO labels AS l (id, item_id, labeler, value, answer, origin, ordinal,
                             idempotency_key, created_at, gold, generation, spec_digest)
    VALUES (r.label_id, v_item, p_labeler, p_value, v_answer, p_origin, r.ordinal,
            p_idempotency_key, r.created_at, v_gold IS NOT NULL, p.generation, p.spec_digest)
    RETURNING l.* INTO v_label;
    INSERT INTO outbox (label_id, message_key, message)
    VALUES (r.label_id, p_item_id,
            label_message(v_label, p_item_id, p_namespace, p_campaign, p_labels_per_item));

    IF v_gold IS NOT NULL THEN
        UPDATE items i
        SET label_count = i.label_count + 1,
            label_seq = i.label_seq + 1,
            lease_count = i.lease_count - CASE WHEN v_reserved THEN 1 ELSE 0 END
        WHERE i.id = v_item;
        DELETE FROM leases l WHERE l.item_id = v_item AND l.labeler = p_labeler;
        INSERT INTO labeler_quality AS q (labeler, gold_answers, gold_correct)
        VALUES (p_labeler, 1, CASE WHEN v_answer = v_gold -> p.answer_key
                                        OR (p.answer_key IS NULL AND p_value = v_gold)
                                   THEN 1 ELSE 0 END)
        ON CONFLICT (labeler) DO UPDATE
        SET gold_answers = q.gold_answers + 1,
            gold_correct = q.gold_correct + EXCLUDED.gold_correct;
        PERFORM add_progress(p_shard, p_gold_answers => 1);
        r.completed := false;
        r.verdict := 'accepted';
        RETURN r;
    END IF;

    -- The completion rule, with this label counted. Exact-N needs the consensus only on
    -- the label that completes the item (its consolidated answer, an audit's outcome).
    IF p.num_classes IS NOT NULL AND v_answer IS NOT NULL
       AND (p.overlap_min IS NOT NULL OR v_label_count + 1 >= v_cap) THEN
        SELECT c.value, c.posterior INTO v_consensus, v_posterior
        FROM item_consensus(v_item, p.num_classes) c;
    END IF;
    IF p.overlap_min IS NOT NULL AND p.num_classes IS NOT NULL THEN
        -- An answer without the answer key (no posterior) counts toward max only.
        v_complete := v_label_count + 1 >= p.overlap_min
                      AND coalesce(v_posterior >= p.overlap_agreement, false)
                      OR v_label_count + 1 >= p.overlap_max;
        v_disputed := v_complete AND NOT coalesce(v_posterior >= p.overlap_agreement, false);
    ELSE
        v_complete := v_label_count + 1 >= v_cap;
    END IF;
    UPDATE items i
    SET label_count = i.label_count + 1,
        label_seq = i.label_seq + 1,
        lease_count = i.lease_count - CASE WHEN v_reserved THEN 1 ELSE 0 END,
        completed_at = CASE WHEN v_complete THEN now() END,
        -- Adaptive overlap: one more label at a time, never a lease beyond what the rule
        -- may still need.
        label_cap = CASE WHEN p.overlap_min IS NOT NULL AND p.num_classes IS NOT NULL
                              AND NOT v_complete
                         THEN least(p.overlap_max, greatest(p.overlap_min, v_label_count + 2))
                         ELSE i.label_cap END,
        disputed = v_disputed,
        consolidated_value = CASE WHEN v_complete AND v_consensus IS NOT NULL
                                  THEN jsonb_build_object(p.answer_key, v_consensus) END,
        consolidated_confidence = CASE WHEN v_complete THEN v_posterior END
    WHERE i.id = v_item;
    DELETE FROM leases l WHERE l.item_id = v_item AND l.labeler = p_labeler;
    IF v_complete AND v_audit AND v_prediction IS NOT NULL AND v_consensus IS NOT NULL THEN
        INSERT INTO audits (item_id, version, confidence, prediction, consensus, correct)
        VALUES (v_item, v_version, v_confidence, v_prediction, v_consensus,
                v_prediction -> p.answer_key = v_consensus)
        ON CONFLICT (item_id) DO UPDATE
        SET version = EXCLUDED.version, confidence = EXCLUDED.confidence,
            prediction = EXCLUDED.prediction, consensus = EXCLUDED.consensus,
            correct = EXCLUDED.correct, created_at = now();
    END IF;
    -- Last: the shard lock is the last one taken, so shards never join a lock cycle.
    PERFORM add_progress(
        p_shard,
        p_labels => 1,
        p_human_labeled => CASE WHEN p_origin = 'human' THEN 1 ELSE 0 END,
        p_machine_labeled => CASE WHEN p_origin = 'machine' THEN 1 ELSE 0 END,
        p_items_completed => CASE WHEN v_complete THEN 1 ELSE 0 END,
        p_disputed => CASE WHEN v_disputed THEN 1 ELSE 0 END,
        p_scored_by_people => CASE WHEN v_complete AND v_version IS NOT NULL THEN 1 ELSE 0 END);
    r.completed := v_complete;
    r.verdict := 'accepted';
    RETURN r;
END
$$;
