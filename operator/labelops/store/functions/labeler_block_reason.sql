-- labeler_block_reason: why the labeler may not label (NULL: they may). spec.labelers
-- lists come first (GitOps bans and pardons); then a block the quality job decided from
-- the labeler's gold answers, whose reason names the rule and the figures.
CREATE OR REPLACE FUNCTION labeler_block_reason(p_labeler text, p campaign_policy)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_reason text;
BEGIN
    IF p_labeler = ANY (p.unblocked) THEN
        RETURN NULL;
    END IF;
    IF p_labeler = ANY (p.blocked) THEN
        RETURN format('labeler %L is blocked: spec.labelers.blocked lists them', p_labeler);
    END IF;
    SELECT q.blocked_reason INTO v_reason FROM labeler_quality q
    WHERE q.labeler = p_labeler AND q.blocked_at IS NOT NULL;
    IF v_reason IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN format('labeler %L is blocked: %s', p_labeler, v_reason);
END
$$;
