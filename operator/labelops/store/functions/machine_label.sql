-- machine_label: auto_accept's work on one item it holds locked: the label of labeler
-- 'model:<version>' (origin machine, with its confidence), its labels-topic message, and
-- the item completed with the prediction as its consolidated value. Counters are the
-- caller's (one progress-shard update per call of auto_accept).
CREATE OR REPLACE FUNCTION machine_label(
    p_item bigint,
    p_item_id text,
    p_version text,
    p_prediction jsonb,
    p_confidence double precision,
    p_label_seq integer,
    p_now timestamptz,
    p campaign_policy
) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    v_label labels;
BEGIN
    INSERT INTO labels AS l (id, item_id, labeler, value, answer, origin, ordinal, created_at,
                             model_version, confidence, generation, spec_digest)
    VALUES (gen_random_uuid(), p_item, 'model:' || p_version, p_prediction,
            p_prediction -> p.answer_key, 'machine', p_label_seq + 1, p_now, p_version,
            p_confidence, p.generation, p.spec_digest)
    RETURNING l.* INTO v_label;
    INSERT INTO outbox (label_id, message_key, message)
    VALUES (v_label.id, p_item_id,
            label_message(v_label, p_item_id, p.namespace, p.campaign, p.labels_per_item));
    UPDATE items i
    SET label_count = i.label_count + 1,
        label_seq = i.label_seq + 1,
        completed_at = p_now,
        machine_labeled = true,
        consolidated_value = p_prediction,
        consolidated_confidence = p_confidence
    WHERE i.id = p_item;
END
$$;
