-- The items a claim must pass over for a labeler: those the labeler labeled (in any status),
-- holds a lease on, or skipped. One definition for both of claim_task's walks (gold turns
-- and open items). It is a UNION ALL of key lookups, so a probe
--   NOT EXISTS (SELECT 1 FROM labeled_held_or_skipped t
--               WHERE t.item_id = i.id AND t.labeler = p_labeler OFFSET 0)
-- stays one (item, labeler) index probe per table: the planner pushes the conditions into
-- each branch (OFFSET 0 keeps it a probe rather than an anti-join over all of the
-- labeler's rows, see claim_task).
CREATE VIEW labeled_held_or_skipped AS
    SELECT l.item_id, l.labeler FROM labels l
    UNION ALL
    SELECT x.item_id, x.labeler FROM leases x WHERE x.reserved
    UNION ALL
    SELECT s.item_id, s.labeler FROM skips s;
