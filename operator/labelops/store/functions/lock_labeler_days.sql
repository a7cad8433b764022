-- lock_labeler_days: the labelers' rows of today, locked in labeler order. Both batch
-- functions (accept_labels, claim_tasks) take them before anything their elements do. A
-- labeler's first label or claim of the day creates the row; creating it here (0 labels)
-- changes nothing accept_label or claim_task would decide.
--
-- Then the labelers' quality rows, in the same order: the elements update them (claim
-- counts, gold answers) in the order they arrive, and the quality job locks many of them
-- in labeler order (agreement, blocks); taken here first, a batch never holds one labeler's
-- quality row while it waits for another's, so the two cannot deadlock.
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
    INSERT INTO labeler_quality AS q (labeler)
    SELECT DISTINCT u.labeler FROM unnest(p_labelers) AS u(labeler)
    ORDER BY 1
    ON CONFLICT (labeler) DO NOTHING;
    PERFORM 1 FROM labeler_quality q
    WHERE q.labeler = ANY (p_labelers)
    ORDER BY q.labeler
    FOR UPDATE;
END
$$;
