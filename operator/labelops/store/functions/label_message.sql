-- label_message: the labels-topic message of a label, with its lineage (who or which model
-- version gave it, with what confidence, under which generation of the campaign and which
-- instructions and label schema), built in one place for people's and models' labels.
-- Generation and spec digest come from campaign_policy (the worker writes them at start).
-- `status` is 'counted', or 'excluded' / 'withdrawn' when a label stops counting (the
-- message then tells consumers to drop the label they got before under the same labelId).
CREATE OR REPLACE FUNCTION label_message(
    p_label_id uuid,
    p_item_id text,
    p_labeler text,
    p_origin text,
    p_value jsonb,
    p_ordinal integer,
    p_created_at timestamptz,
    p_model_version text,
    p_confidence double precision,
    p_gold boolean,
    p_status text,
    p_namespace text,
    p_campaign text,
    p_labels_per_item integer
) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT
AS $$
DECLARE
    p campaign_policy;
BEGIN
    SELECT * INTO p FROM campaign_policy;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'labelId', p_label_id,
        'campaign', jsonb_build_object('namespace', p_namespace, 'name', p_campaign),
        'itemId', p_item_id,
        'labeler', p_labeler,
        'origin', p_origin,
        'value', p_value,
        'ordinal', p_ordinal,
        'labelsPerItem', p_labels_per_item,
        'createdAt', rfc3339_utc(p_created_at),
        'modelVersion', p_model_version,
        'confidence', p_confidence,
        'gold', CASE WHEN p_gold THEN true END,
        'status', p_status,
        'generation', p.generation,
        'specDigest', p.spec_digest));
END
$$;
