-- accept_label_and_claim: accept_label, then, when the label was accepted (or the
-- submission is a replay of an accepted one), claim_task for the same labeler: the label
-- and the labeler's next lease in one statement and one transaction, for
-- POST /v1/tasks/{id}/labels?next=true. One round trip and one commit instead of two; the
-- rules are those of the two functions, unchanged. The claim lands in the next_* columns.
--
-- Why one transaction cannot deadlock: accept_label takes its locks in the usual order (the
-- item, the labeler's row of the day, a progress shard last) and the claim part then waits
-- for nothing. It locks the labeler's row of the day, which accept_label already holds
-- (after a replay it does not, and takes it after the item, the order accept_label uses);
-- items only with SKIP LOCKED; lease rows only of items it locked, or this labeler's own,
-- which nobody else writes while this transaction holds the labeler's row.
CREATE OR REPLACE FUNCTION accept_label_and_claim(
    -- accept_label's, in its order:
    p_item_id text, p_labeler text, p_labels_per_item integer, p_daily_quota integer,
    p_value jsonb, p_origin text, p_idempotency_key text, p_namespace text, p_campaign text,
    p_shard smallint,
    -- and those of claim_task that accept_label has not:
    p_lease_seconds double precision, p_max_leases integer, p_reap_limit integer
) RETURNS submission_result
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    r submission_result;
    c claim_result;
BEGIN
    r := accept_label(p_item_id, p_labeler, p_labels_per_item, p_daily_quota, p_value,
                      p_origin, p_idempotency_key, p_namespace, p_campaign, p_shard);
    -- A replay of this very submission gets a next task too; a key reused for another
    -- item or value is refused by the worker (409), which must not leave a lease behind.
    IF r.verdict = 'accepted'
       OR (r.verdict = 'replay' AND r.replay_item_id = p_item_id AND r.replay_value = p_value)
    THEN
        c := claim_task(p_labeler, p_labels_per_item, p_lease_seconds, p_daily_quota,
                        p_max_leases, p_reap_limit);
        r.next_verdict := c.verdict;
        r.next_labels_today := c.labels_today;
        r.next_held := c.held;
        r.next_earliest_expiry := c.earliest_expiry;
        r.next_clock := c.clock;
        r.next_item_id := c.item_id;
        r.next_payload := c.payload;
        r.next_priority := c.priority;
        r.next_model_prediction := c.model_prediction;
        r.next_model_confidence := c.model_confidence;
        r.next_expires_at := c.expires_at;
    END IF;
    RETURN r;
END
$$;
