-- auto_acceptable: whether version v's prediction on item i may stand as the item's one
-- label without people: v is trusted, not braked, and i's confidence reaches v's proven
-- threshold; i is open, not gold, not an audit, and nobody's (no label, no lease).
-- auto_accept's two queries (its candidates, unlocked, then each candidate locked) ask it.
-- It reads no table and has no SET clause, so the planner inlines it into those queries
-- (an index on the columns still serves them).
CREATE OR REPLACE FUNCTION auto_acceptable(i items, v model_versions)
RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT v.trusted AND NOT v.braked AND i.model_confidence >= v.threshold
           AND i.completed_at IS NULL AND i.gold_value IS NULL AND NOT i.audit
           AND i.label_count = 0 AND i.lease_count = 0
$$;
