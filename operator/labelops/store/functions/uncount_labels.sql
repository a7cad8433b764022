-- uncount_labels: labels of one labeler stop counting, kept for audit with status
-- p_status, and a message with that status goes to the labels topic (labelId as before,
-- the label's own lineage). Their items lose the label and reopen for people (an item a
-- machine label had completed is open again, its consolidated answer gone). Two uses:
--   'excluded', a blocked labeler's labels on items not yet complete (exclude_labeler;
--   labels on complete items and gold answers stay as they are);
--   'withdrawn', the brake: a model version's labels given after p_after (the newest
--   audit of its last passing window; NULL: all of them), p_labeler 'model:<version>'.
-- Locks: the items in id order, then one progress shard. Returns the labels uncounted.
CREATE OR REPLACE FUNCTION uncount_labels(
    p_labeler text,
    p_status text,
    p_after timestamptz,
    p_shard smallint
) RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    r record;
    v_label labels;
    n integer := 0;
    v_human integer := 0;
    v_completed integer := 0;
    p campaign_policy;
BEGIN
    IF p_status NOT IN ('excluded', 'withdrawn') THEN
        RAISE EXCEPTION 'uncount_labels: status %: must be excluded or withdrawn', p_status;
    END IF;
    SELECT * INTO p FROM campaign_policy;
    FOR r IN
        SELECT l.id, i.external_id, i.completed_at IS NOT NULL AS complete
        FROM labels l JOIN items i ON i.id = l.item_id
        WHERE l.labeler = p_labeler AND l.status = 'counted' AND NOT l.gold
          AND CASE WHEN p_status = 'excluded' THEN i.completed_at IS NULL
                   ELSE p_after IS NULL OR l.created_at > p_after END
        ORDER BY l.item_id
        FOR UPDATE OF i
    LOOP
        UPDATE labels l SET status = p_status WHERE l.id = r.id RETURNING l.* INTO v_label;
        UPDATE items i
        SET label_count = i.label_count - 1,
            completed_at = NULL,
            machine_labeled = false,
            disputed = false,
            consolidated_value = NULL,
            consolidated_confidence = NULL
        WHERE i.id = v_label.item_id;
        INSERT INTO outbox (label_id, message_key, message)
        VALUES (v_label.id, r.external_id,
                label_message(v_label, r.external_id, p.namespace, p.campaign,
                              p.labels_per_item));
        n := n + 1;
        v_human := v_human + CASE WHEN v_label.origin = 'human' THEN 1 ELSE 0 END;
        v_completed := v_completed + CASE WHEN r.complete THEN 1 ELSE 0 END;
    END LOOP;
    IF n > 0 THEN
        PERFORM add_progress(p_shard, p_labels => -n, p_human_labeled => -v_human,
                             p_machine_labeled => -(n - v_human),
                             p_items_completed => -v_completed,
                             p_withdrawn => CASE WHEN p_status = 'withdrawn' THEN n ELSE 0 END,
                             p_excluded => CASE WHEN p_status = 'excluded' THEN n ELSE 0 END);
    END IF;
    RETURN n;
END
$$;
