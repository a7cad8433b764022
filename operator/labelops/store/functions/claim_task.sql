-- claim_task: the labeler's next task, with a lease on it, or the reason there is none
-- (claim_result's verdicts). The rules are documented in labelops.store.labelstore.
--
-- With the campaign's policy (campaign_policy): a blocked labeler gets 'blocked'; a gold
-- turn (the labeler's first quality.gold.onboarding claims, then a random share
-- quality.gold.rate of them, labelops.quality.sampling) serves a gold item the labeler has
-- not answered, if any is left; other claims walk the open items by priority, then, with
-- model.order uncertainty, audits first and least confident first (items.claim_rank). An
-- item's slots are its label_cap (adaptive overlap raises it one label at a time) or
-- labelsPerItem / quality.overlap.min.
--
-- Cost per claim: the candidate items are checked against this labeler's labels, leases
-- and skips one (item, labeler) key probe at a time, so a claim does not read all of a
-- labeler's labels; the labeler's row of the day is locked rather than rewritten; expired
-- leases are reaped only when an index probe finds some; and no plan sorts all open items.
CREATE OR REPLACE FUNCTION claim_task(
    p_labeler text,
    p_labels_per_item integer,
    p_lease_seconds double precision,
    p_daily_quota integer,
    p_max_leases integer,
    p_reap_limit integer
) RETURNS claim_result
LANGUAGE plpgsql
SET search_path FROM CURRENT
-- The next task must come from walking items_open_in_claim_order in order and stopping at the
-- first fit: cost in proportion to the items passed over, whatever the number pending. With
-- some table statistics the planner would rather fetch every open item and sort them, which
-- costs in proportion to the pending items on every claim.
SET enable_sort = off
AS $$
DECLARE
    r claim_result;
    v_item bigint;
    v_claims bigint;
    v_cap integer;
    p campaign_policy;
BEGIN
    r.clock := now();
    SELECT * INTO p FROM campaign_policy;
    v_cap := CASE WHEN p.overlap_min IS NOT NULL AND p.num_classes IS NOT NULL
                  THEN p.overlap_min ELSE p_labels_per_item END;
    -- The labeler's row of today is the per-labeler lock: it serialises one labeler's
    -- claims (exact maxLeasesPerLabeler) with their submissions. Locking the row writes no
    -- new version of it; only the day's first claim inserts it (the upsert covers a
    -- concurrent first claim).
    SELECT d.labels INTO r.labels_today FROM labeler_days d
    WHERE d.labeler = p_labeler AND d.day = (now() AT TIME ZONE 'UTC')::date
    FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO labeler_days AS d (labeler, day, labels)
        VALUES (p_labeler, (now() AT TIME ZONE 'UTC')::date, 0)
        ON CONFLICT (labeler, day) DO UPDATE SET labels = d.labels
        RETURNING d.labels INTO r.labels_today;
    END IF;

    SELECT count(*), min(l.expires_at) INTO r.held, r.earliest_expiry
    FROM leases l
    WHERE l.labeler = p_labeler AND l.reserved AND l.expires_at > now();

    -- Read under the row of the day, which serialises this labeler's claims: the claim
    -- count the gold turns are drawn from.
    SELECT q.claims INTO v_claims FROM labeler_quality q WHERE q.labeler = p_labeler;
    r.refusal := labeler_block_reason(p_labeler, p);
    IF r.refusal IS NOT NULL THEN
        r.verdict := 'blocked';
        RETURN r;
    END IF;

    IF r.labels_today >= p_daily_quota THEN
        r.verdict := 'per_labeler_daily';
    ELSIF r.held >= p_max_leases THEN
        r.verdict := 'max_leases_per_labeler';
    ELSIF r.labels_today + r.held >= p_daily_quota THEN
        r.verdict := 'daily_room';  -- no task the labeler could not submit today
    END IF;
    IF r.verdict IS NOT NULL THEN
        RETURN r;
    END IF;

    -- Give the slots of expired leases back. Items are locked first, as everywhere, and
    -- with SKIP LOCKED: an item busy elsewhere is reaped by a later claim. Most claims find
    -- none: one probe of leases_reserved_by_expiry says so without running the statement
    -- that reaps (ORDER BY ... LIMIT 1 asks for that index: leases churns, and a scan of the
    -- table would read its dead rows too).
    IF EXISTS (SELECT 1 FROM leases x WHERE x.reserved AND x.expires_at <= now()
               ORDER BY x.expires_at LIMIT 1) THEN
        WITH expired AS (
            SELECT i.id FROM items i
            WHERE i.id IN (SELECT x.item_id FROM leases x
                           WHERE x.reserved AND x.expires_at <= now()
                           ORDER BY x.expires_at LIMIT p_reap_limit)
            ORDER BY i.id
            FOR UPDATE OF i SKIP LOCKED
        ), unreserved AS (
            UPDATE leases l SET reserved = false FROM expired
            WHERE l.item_id = expired.id AND l.reserved AND l.expires_at <= now()
            RETURNING l.item_id
        )
        UPDATE items i SET lease_count = i.lease_count - freed.n
        FROM (SELECT u.item_id, count(*) AS n FROM unreserved u GROUP BY u.item_id) freed
        WHERE i.id = freed.item_id;
    END IF;

    -- A gold turn: the first gold item (in id order) this labeler has not answered, holds
    -- or skipped. Gold items have no cap: every labeler may answer each once.
    IF (p.gold_rate > 0 OR p.gold_onboarding > 0)
       AND (coalesce(v_claims, 0) + 1 <= p.gold_onboarding
            OR (('x' || substr(md5('labelops/gold' || chr(31) || p_labeler || chr(31)
                                   || (coalesce(v_claims, 0) + 1)::text), 1, 13))::bit(52)
                ::bigint::float8 / 4503599627370496::float8) < p.gold_rate) THEN
        SELECT i.id, i.external_id, i.payload, i.priority, i.model_prediction,
               i.model_confidence
        INTO v_item, r.item_id, r.payload, r.priority, r.model_prediction, r.model_confidence
        FROM items i
        WHERE i.gold_value IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM labeled_held_or_skipped t
                          WHERE t.item_id = i.id AND t.labeler = p_labeler OFFSET 0)
        ORDER BY i.id
        LIMIT 1
        FOR UPDATE OF i SKIP LOCKED;
    END IF;

    -- The first open item, in the campaign's order, with a free slot this labeler has not
    -- labeled, does not hold and did not skip. items_open_in_claim_order serves the order
    -- whatever model.order says (claim_rank); SKIP LOCKED lets concurrent claimers pass
    -- each other.
    --
    -- OFFSET 0 keeps the NOT EXISTS a probe of the (item, labeler) keys per candidate
    -- item. Without it the planner turns it into an anti-join that first reads every label
    -- (and lease) of the labeler, so a claim cost more the more the labeler had labeled.
    IF v_item IS NULL THEN
        SELECT i.id, i.external_id, i.payload, i.priority, i.model_prediction,
               i.model_confidence
        INTO v_item, r.item_id, r.payload, r.priority, r.model_prediction, r.model_confidence
        FROM items i
        WHERE i.completed_at IS NULL AND i.gold_value IS NULL
          AND i.label_count + i.lease_count < coalesce(i.label_cap, v_cap)
          AND NOT EXISTS (SELECT 1 FROM labeled_held_or_skipped t
                          WHERE t.item_id = i.id AND t.labeler = p_labeler OFFSET 0)
        ORDER BY i.priority DESC, i.claim_rank, i.id
        LIMIT 1
        FOR UPDATE OF i SKIP LOCKED;
    END IF;
    IF v_item IS NULL THEN
        r.verdict := 'none';
        RETURN r;
    END IF;

    -- A lapsed (unreserved) lease row of this labeler on the item is reused.
    INSERT INTO leases AS l (item_id, labeler, claimed_at, expires_at, reserved)
    VALUES (v_item, p_labeler, now(), now() + make_interval(secs => p_lease_seconds), true)
    ON CONFLICT ON CONSTRAINT leases_pkey DO UPDATE
    SET claimed_at = EXCLUDED.claimed_at, expires_at = EXCLUDED.expires_at, reserved = true
    RETURNING l.expires_at INTO r.expires_at;
    UPDATE items SET lease_count = items.lease_count + 1 WHERE items.id = v_item;
    -- The claim count only draws gold turns: without gold, no write for it.
    IF p.gold_rate > 0 OR p.gold_onboarding > 0 THEN
        INSERT INTO labeler_quality AS q (labeler, claims) VALUES (p_labeler, 1)
        ON CONFLICT (labeler) DO UPDATE SET claims = q.claims + 1;
    END IF;
    r.verdict := 'claimed';
    RETURN r;
END
$$;
