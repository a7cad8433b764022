-- accept_label_and_claim: accept_label (0003), then, when the label was accepted (or the
-- submission is a replay of an accepted one), claim_task (0004) for the same labeler: the
-- label and the labeler's next lease in one statement and one transaction, for
-- POST /v1/tasks/{id}/labels?next=true. One round trip and one commit instead of two; the
-- rules are those of the two functions, unchanged.
--
-- Why one transaction cannot deadlock: accept_label takes its locks in the usual order (the
-- item, the labeler's row of the day, a progress shard last) and the claim part then waits
-- for nothing. It locks the labeler's row of the day, which accept_label already holds
-- (after a replay it does not, and takes it after the item, the order accept_label uses);
-- items only with SKIP LOCKED; lease rows only of items it locked, or this labeler's own,
-- which nobody else writes while this transaction holds the labeler's row.
--
-- The result: accept_label's columns, then claim_task's prefixed with next_ (next_verdict
-- is NULL when no claim was made).
CREATE FUNCTION accept_label_and_claim(
    p_item_id text,
    p_labeler text,
    p_labels_per_item integer,
    p_daily_quota integer,
    p_value jsonb,
    p_origin text,
    p_idempotency_key text,
    p_namespace text,
    p_campaign text,
    p_shard smallint,
    p_lease_seconds double precision,
    p_max_leases integer,
    p_reap_limit integer
) RETURNS TABLE (
    verdict text,
    label_id uuid,
    created_at timestamptz,
    ordinal integer,
    replay_label_id uuid,
    replay_item_id text,
    replay_value jsonb,
    replay_created_at timestamptz,
    replay_ordinal integer,
    next_verdict text,
    next_labels_today integer,
    next_held integer,
    next_earliest_expiry timestamptz,
    next_clock timestamptz,
    next_item_id text,
    next_payload jsonb,
    next_priority integer,
    next_model_prediction jsonb,
    next_model_confidence double precision,
    next_expires_at timestamptz
)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    a record;
    c record;
BEGIN
    SELECT * INTO a FROM accept_label(p_item_id, p_labeler, p_labels_per_item, p_daily_quota,
                                      p_value, p_origin, p_idempotency_key, p_namespace,
                                      p_campaign, p_shard);
    verdict := a.verdict;
    label_id := a.label_id;
    created_at := a.created_at;
    ordinal := a.ordinal;
    replay_label_id := a.replay_label_id;
    replay_item_id := a.replay_item_id;
    replay_value := a.replay_value;
    replay_created_at := a.replay_created_at;
    replay_ordinal := a.replay_ordinal;
    -- A replay of this very submission gets a next task too; a key reused for another
    -- item or value is refused by the worker (409), which must not leave a lease behind.
    IF a.verdict = 'accepted'
       OR (a.verdict = 'replay' AND a.replay_item_id = p_item_id AND a.replay_value = p_value)
    THEN
        SELECT * INTO c FROM claim_task(p_labeler, p_labels_per_item, p_lease_seconds,
                                        p_daily_quota, p_max_leases, p_reap_limit);
        next_verdict := c.verdict;
        next_labels_today := c.labels_today;
        next_held := c.held;
        next_earliest_expiry := c.earliest_expiry;
        next_clock := c.clock;
        next_item_id := c.item_id;
        next_payload := c.payload;
        next_priority := c.priority;
        next_model_prediction := c.model_prediction;
        next_model_confidence := c.model_confidence;
        next_expires_at := c.expires_at;
    END IF;
    RETURN NEXT;
END
$$;

REVOKE ALL ON FUNCTION accept_label_and_claim(text, text, integer, integer, jsonb, text, text,
                                              text, text, smallint, double precision, integer,
                                              integer)
    FROM PUBLIC;
