-- label_message: the labels-topic message of a label, from its row: who or which model
-- version gave it, with what confidence, and its lineage (the generation of the campaign
-- and the digest of the instructions and label schema it was given under, stored with the
-- label), built in one place for people's and models' labels.
-- The row's status is 'counted', or 'excluded' / 'withdrawn' when a label stops counting
-- (the message then tells consumers to drop the label they got before under the same
-- labelId; it carries the label's own lineage, not the campaign's current one).
CREATE OR REPLACE FUNCTION label_message(
    l labels,
    p_item_id text,
    p_namespace text,
    p_campaign text,
    p_labels_per_item integer
) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT
AS $$
BEGIN
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'labelId', l.id,
        'campaign', jsonb_build_object('namespace', p_namespace, 'name', p_campaign),
        'itemId', p_item_id,
        'labeler', l.labeler,
        'origin', l.origin,
        'value', l.value,
        'ordinal', l.ordinal,
        'labelsPerItem', p_labels_per_item,
        'createdAt', rfc3339_utc(l.created_at),
        'modelVersion', l.model_version,
        'confidence', l.confidence,
        'gold', CASE WHEN l.gold THEN true END,
        'status', l.status,
        'generation', l.generation,
        'specDigest', l.spec_digest));
END
$$;
