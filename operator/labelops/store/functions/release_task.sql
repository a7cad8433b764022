-- release_task: a labeler gives a task back.
--
-- item_found: the item exists; had_lease: the labeler held a lease on it (then removed, its
-- slot back in the pool if it still held one). The skip is remembered either way, so
-- claim_task does not offer the item to this labeler again.
CREATE OR REPLACE FUNCTION release_task(p_item_id text, p_labeler text)
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
