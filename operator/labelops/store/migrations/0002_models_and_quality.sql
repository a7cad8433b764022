-- Models in the loop and data quality: the item lifecycle of docs/item-lifecycle.md.
--
--   ingested --(prediction)--> scored --(not an audit, confidence >= proven threshold)--> done (machine)
--   scored | unscored --(people)--> labeled k times --(completion rule)--> done [| disputed]
--   done (machine) --(the version loses trust)--> reopened for people
--   gold items: served like others, never complete, never counted toward the target
--
-- The completion rule is fixed-N (labelsPerItem) or adaptive overlap (campaign_policy).

-- What the worker was configured with, written by every worker at start (sync_policy): the
-- functions read it instead of taking a dozen more parameters, and a spec change reaches
-- open items with the next rollout.
CREATE TABLE campaign_policy (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    namespace          text NOT NULL DEFAULT '',
    campaign           text NOT NULL DEFAULT '',
    labels_per_item    integer NOT NULL DEFAULT 1,
    generation         bigint NOT NULL DEFAULT 0,
    spec_digest        text NOT NULL DEFAULT '',
    order_by           text NOT NULL DEFAULT 'priority'
                       CHECK (order_by IN ('priority', 'uncertainty')),
    -- A categorical task's answer is one member of its label value ('preferred' for
    -- pairwise, 'choice' for classification with one choice, 'score' for rating), of
    -- num_classes possible ones (3 for pairwise: either response or a tie; the choices;
    -- max - min + 1). NULL for the other types: no posterior, no audits.
    answer_key         text CHECK (answer_key IN ('preferred', 'choice', 'score')),
    num_classes        integer CHECK (num_classes IS NULL OR num_classes >= 2),
    auto_accept        boolean NOT NULL DEFAULT false,
    target_accuracy    double precision NOT NULL DEFAULT 0.95,
    confidence_level   double precision NOT NULL DEFAULT 0.95,
    audit_rate         double precision NOT NULL DEFAULT 0
                       CHECK (audit_rate >= 0 AND audit_rate < 1),
    brake_window       integer NOT NULL DEFAULT 100,
    gold_rate          double precision NOT NULL DEFAULT 0 CHECK (gold_rate >= 0 AND gold_rate < 1),
    gold_onboarding    integer NOT NULL DEFAULT 0,
    gold_min_answers   integer NOT NULL DEFAULT 10,
    gold_min_accuracy  double precision NOT NULL DEFAULT 0,
    -- Adaptive overlap: NULL when the campaign takes exactly labelsPerItem.
    overlap_min        integer,
    overlap_max        integer,
    overlap_agreement  double precision,
    blocked            text[] NOT NULL DEFAULT '{}',
    unblocked          text[] NOT NULL DEFAULT '{}',
    CONSTRAINT campaign_policy_overlap CHECK (
        (overlap_min IS NULL AND overlap_max IS NULL AND overlap_agreement IS NULL)
        OR (overlap_min >= 1 AND overlap_max >= overlap_min
            AND overlap_agreement > 0.5 AND overlap_agreement < 1))
);
INSERT INTO campaign_policy DEFAULT VALUES;

ALTER TABLE items
    ADD COLUMN model_version   text,
    ADD COLUMN model_scored_at timestamptz,
    -- Decided when a prediction is applied, from the item id and the version
    -- (labelops.quality.sampling): audits go to people whatever the model's confidence.
    ADD COLUMN audit           boolean NOT NULL DEFAULT false,
    -- A gold (honeypot) item's right answer; NULL for the items being labeled.
    ADD COLUMN gold_value      jsonb,
    -- Labels the completion rule may take on this item in all (NULL: the campaign's
    -- labelsPerItem, or overlap.min): adaptive overlap raises it one label at a time.
    ADD COLUMN label_cap       integer,
    -- Every label the item ever took, counted or not: the next label's ordinal.
    ADD COLUMN label_seq       integer NOT NULL DEFAULT 0,
    ADD COLUMN machine_labeled boolean NOT NULL DEFAULT false,
    ADD COLUMN disputed        boolean NOT NULL DEFAULT false,
    ADD COLUMN consolidated_value      jsonb,
    ADD COLUMN consolidated_confidence double precision,
    -- Where the item stands in the claim order among items of its priority: written with
    -- audit by after_scoring, and for every open item when model.order changes
    -- (labelops.store.policy.write_policy).
    ADD COLUMN claim_rank double precision NOT NULL DEFAULT 0;
UPDATE items SET label_seq = label_count;

-- The claim order, one index whatever model.order says: priority, then claim_rank, then
-- ingest order. claim_rank is 0 for every item under model.order priority; under
-- uncertainty it puts audits first (they calibrate the model), then unscored items (the
-- least known), then the least confident (functions/claim_rank.sql). Gold items never
-- complete and have no cap: they leave the claim order of the rest.
DROP INDEX items_open_by_priority;
CREATE INDEX items_open_in_claim_order ON items (priority DESC, claim_rank, id)
    WHERE completed_at IS NULL AND gold_value IS NULL;
CREATE INDEX items_gold ON items (id) WHERE gold_value IS NOT NULL;
-- Scored, pending, auto-acceptable candidates of a version, most confident first.
CREATE INDEX items_pending_by_version ON items (model_version, model_confidence DESC)
    WHERE completed_at IS NULL AND gold_value IS NULL AND NOT audit;
-- The quality job walks completions in order (agreement with consensus).
CREATE INDEX items_completed_at ON items (completed_at) WHERE completed_at IS NOT NULL;

-- A prediction that arrived before its item, applied when the item is ingested.
CREATE TABLE early_predictions (
    external_id      text PRIMARY KEY,
    model_version    text NOT NULL,
    model_prediction jsonb NOT NULL,
    model_confidence double precision NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now()
);

-- Lineage of every label, and whether it still counts: a blocked labeler's labels on open
-- items are 'excluded', a distrusted model's labels 'withdrawn'; both stay for audit.
ALTER TABLE labels
    ADD COLUMN status        text NOT NULL DEFAULT 'counted',
    -- The categorical answer (value -> answer_key): what consensus and gold compare, so a
    -- rationale beside a preference does not split the votes.
    ADD COLUMN answer        jsonb,
    ADD COLUMN gold          boolean NOT NULL DEFAULT false,
    ADD COLUMN model_version text,
    ADD COLUMN confidence    double precision,
    ADD COLUMN generation    bigint,
    ADD COLUMN spec_digest   text,
    ADD CONSTRAINT labels_status_known CHECK (status IN ('counted', 'excluded', 'withdrawn'));
CREATE INDEX labels_by_labeler_open ON labels (labeler) WHERE status = 'counted' AND NOT gold;

-- One row per model version seen: its calibration, as the quality job last computed it.
CREATE TABLE model_versions (
    version        text PRIMARY KEY,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    threshold      double precision,
    trusted        boolean NOT NULL DEFAULT false,
    braked         boolean NOT NULL DEFAULT false,
    audits         bigint NOT NULL DEFAULT 0,
    audits_correct bigint NOT NULL DEFAULT 0,
    lower_bound    double precision,
    -- The newest audit of the last rolling window that passed: the brake withdraws the
    -- machine labels given after it.
    last_passing_at timestamptz,
    message        text NOT NULL DEFAULT '',
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- An audited item's outcome: people's consensus against the model's prediction.
CREATE TABLE audits (
    item_id    bigint PRIMARY KEY REFERENCES items (id),
    version    text NOT NULL,
    confidence double precision NOT NULL,
    prediction jsonb NOT NULL,
    consensus  jsonb NOT NULL,
    correct    boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audits_by_version ON audits (version, created_at);

-- Per labeler: claims (the gold turns count them), gold answers, agreement with consensus
-- (maintained by the quality job), and a block. Locked after the labeler's row of the
-- day (a batch takes its labelers' rows in labeler order, lock_labeler_days) and by the
-- quality job, which locks them all in labeler order first.
CREATE TABLE labeler_quality (
    labeler         text PRIMARY KEY,
    claims          bigint NOT NULL DEFAULT 0,
    gold_answers    integer NOT NULL DEFAULT 0,
    gold_correct    integer NOT NULL DEFAULT 0,
    agreements      integer NOT NULL DEFAULT 0,
    agreement_total integer NOT NULL DEFAULT 0,
    blocked_at      timestamptz,
    blocked_reason  text,
    -- The block's consequences (labels on open items excluded) are applied by the quality
    -- job, outside the submission that decided the block.
    exclusion_done  boolean NOT NULL DEFAULT false
);

-- The operator's Event per newly blocked labeler reads only the blocks since its watermark.
CREATE INDEX labeler_quality_blocked ON labeler_quality (blocked_at) WHERE blocked_at IS NOT NULL;

-- Summaries the operator reads in O(1), written by the quality job.
CREATE TABLE quality_summary (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    alpha              double precision,
    alpha_level        text,
    gold_answers       bigint NOT NULL DEFAULT 0,
    gold_correct       bigint NOT NULL DEFAULT 0,
    labelers_blocked   integer NOT NULL DEFAULT 0,
    completed_watermark timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
INSERT INTO quality_summary DEFAULT VALUES;

ALTER TABLE progress_shards
    ADD COLUMN gold_answers      bigint NOT NULL DEFAULT 0,
    ADD COLUMN disputed          bigint NOT NULL DEFAULT 0,
    -- Items people completed although a model had scored them (audits included).
    ADD COLUMN scored_by_people  bigint NOT NULL DEFAULT 0,
    ADD COLUMN withdrawn         bigint NOT NULL DEFAULT 0,
    ADD COLUMN excluded          bigint NOT NULL DEFAULT 0,
    ADD COLUMN gold_items        bigint NOT NULL DEFAULT 0;

-- Why the store refused, in words, where the words need figures only the database has
-- (verdict 'blocked': the rule and the labeler's gold figures).
ALTER TYPE claim_result ADD ATTRIBUTE refusal text;
ALTER TYPE submission_result ADD ATTRIBUTE refusal text;
-- Whether the accepted label completed its item (adaptive overlap decides it in SQL).
ALTER TYPE submission_result ADD ATTRIBUTE completed boolean;
