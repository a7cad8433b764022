-- lock_labeler_days: the labelers' rows of today, locked in labeler order. Both batch
-- functions (accept_labels, claim_tasks) take them before anything their elements do. A
-- labeler's first label or claim of the day creates the row; creating it here (0 labels)
-- changes nothing accept_label or claim_task would decide.
CREATE OR REPLACE FUNCTION lock_labeler_days(p_labelers text[]) RETURNS void
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    INSERT INTO labeler_days AS d (labeler, day, labels)
    SELECT DISTINCT u.labeler, (now() AT TIME ZONE 'UTC')::date, 0
    FROM unnest(p_labelers) AS u(labeler)
    ORDER BY 1
    ON CONFLICT (labeler, day) DO NOTHING;
    PERFORM 1 FROM labeler_days d
    WHERE d.labeler = ANY (p_labelers) AND d.day = (now() AT TIME ZONE 'UTC')::date
    ORDER BY d.labeler
    FOR UPDATE;
END
$$;
