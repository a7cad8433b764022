-- The campaign's tables, and the row types its functions return. Runs with search_path set
-- to the campaign's schema, as the campaign's role, so every object lands in that schema and
-- is owned by that role. The functions live in ../functions/ (see labelops.store.migrations).

-- One row per item to label. label_count and lease_count are maintained in the same
-- transactions that add labels and leases, so "has this item a free slot" is one predicate
-- on the row: label_count + lease_count < labelsPerItem.
CREATE TABLE items (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_id      text NOT NULL,
    payload          jsonb NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    model_prediction jsonb,
    model_confidence double precision,
    label_count      integer NOT NULL DEFAULT 0,
    lease_count      integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- Set when label_count reaches labelsPerItem; the item then leaves the claim index.
    completed_at     timestamptz,
    CONSTRAINT items_external_id_unique UNIQUE (external_id),
    CONSTRAINT items_counts_not_negative CHECK (label_count >= 0 AND lease_count >= 0)
) WITH (fillfactor = 80);  -- room for HOT updates of the counters

-- "Next task": the first open item in (priority desc, id) order. Only open items are in it,
-- so the claim scan never walks over completed work.
CREATE INDEX items_open_by_priority ON items (priority DESC, id) WHERE completed_at IS NULL;

-- A lease reserves one of an item's slots for one labeler. `reserved` turns false when the
-- lease expires and is reaped (the slot goes back to the pool); the row stays so a late
-- submission can be told apart from one that never claimed the item.
CREATE TABLE leases (
    item_id    bigint NOT NULL REFERENCES items (id),
    labeler    text NOT NULL,
    claimed_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    reserved   boolean NOT NULL DEFAULT true,
    PRIMARY KEY (item_id, labeler)
);
CREATE INDEX leases_reserved_by_expiry ON leases (expires_at) WHERE reserved;
CREATE INDEX leases_reserved_by_labeler ON leases (labeler, expires_at) WHERE reserved;

-- Items a labeler released: claim does not hand them back to that labeler.
CREATE TABLE skips (
    item_id    bigint NOT NULL REFERENCES items (id),
    labeler    text NOT NULL,
    skipped_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item_id, labeler)
);

-- Accepted labels. ordinal is the label's position (1..labelsPerItem) on its item: the
-- unique (item_id, ordinal) is a second, database-level guard for exactly-N.
CREATE TABLE labels (
    id              uuid PRIMARY KEY,
    item_id         bigint NOT NULL REFERENCES items (id),
    labeler         text NOT NULL,
    value           jsonb NOT NULL,
    origin          text NOT NULL DEFAULT 'human',
    ordinal         integer NOT NULL,
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT labels_item_labeler_unique UNIQUE (item_id, labeler),
    CONSTRAINT labels_item_ordinal_unique UNIQUE (item_id, ordinal),
    CONSTRAINT labels_idempotency_key_unique UNIQUE (labeler, idempotency_key),
    CONSTRAINT labels_origin_known CHECK (origin IN ('human', 'machine')),
    CONSTRAINT labels_ordinal_positive CHECK (ordinal >= 1)
);

-- Labels waiting to be relayed to the labels topic; a row is deleted once Kafka acked it.
-- No foreign key to labels: the relay deletes at high rate and needs no lookup.
CREATE TABLE outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    label_id    uuid NOT NULL,
    message_key text NOT NULL,
    message     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Item messages that could not be ingested, with the reason. Unique by Kafka position so
-- a redelivered bad message is recorded once.
CREATE TABLE dead_letters (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_topic     text NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    raw_key          bytea,
    raw_value        bytea,
    reason           text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dead_letters_position_unique UNIQUE (source_topic, source_partition, source_offset)
);

-- Accepted labels per labeler per UTC day: the perLabelerDaily quota and /me. The row of
-- (labeler, today) is also the per-labeler lock that serialises one labeler's claims.
CREATE TABLE labeler_days (
    labeler text NOT NULL,
    day     date NOT NULL,
    labels  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (labeler, day)
);

-- Progress counters, sharded so concurrent transactions rarely update the same row; a
-- read sums the fixed set of shards (O(1) in the number of labels). Each writer updates
-- exactly one shard, as its last statement.
CREATE TABLE progress_shards (
    shard           smallint PRIMARY KEY,
    items_total     bigint NOT NULL DEFAULT 0,
    items_completed bigint NOT NULL DEFAULT 0,
    labels          bigint NOT NULL DEFAULT 0,
    human_labeled   bigint NOT NULL DEFAULT 0,
    machine_labeled bigint NOT NULL DEFAULT 0,
    rejected        bigint NOT NULL DEFAULT 0,
    dead_lettered   bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 50);
INSERT INTO progress_shards (shard) SELECT generate_series(0, 15);

-- What a claim returns: claim_task's one row, and each of claim_tasks' rows (element is the
-- row's 1-based position in the batch, NULL from claim_task). verdict: 'claimed' (the item's
-- columns and expires_at set), 'none' (nothing to claim), 'per_labeler_daily' (today's
-- labels reached the quota), 'max_leases_per_labeler', 'daily_room' (today's labels + held
-- leases reached the quota). A type, not a table: changed by a numbered migration too, as
-- the functions' signatures depend on it.
CREATE TYPE claim_result AS (
    element          integer,
    verdict          text,
    labels_today     integer,
    held             integer,
    earliest_expiry  timestamptz,
    clock            timestamptz,
    item_id          text,
    payload          jsonb,
    priority         integer,
    model_prediction jsonb,
    model_confidence double precision,
    expires_at       timestamptz
);

-- What a submission returns: accept_label's one row, accept_label_and_claim's, and each of
-- accept_labels' rows (element as in claim_result). verdict: 'accepted' (label_id, ordinal
-- set), 'replay' (replay_*: a label stored earlier under this Idempotency-Key),
-- 'not_found', 'already_labeled', 'item_full', 'lease_required', 'lease_expired',
-- 'per_labeler_daily'. created_at is always set: the accepted label's time, or the clock a
-- refusal's Retry-After is computed from. The next_* columns are the claim_result of the
-- labeler's next lease (NULL when no claim was made).
CREATE TYPE submission_result AS (
    element              integer,
    verdict              text,
    label_id             uuid,
    created_at           timestamptz,
    ordinal              integer,
    replay_label_id      uuid,
    replay_item_id       text,
    replay_value         jsonb,
    replay_created_at    timestamptz,
    replay_ordinal       integer,
    next_verdict         text,
    next_labels_today    integer,
    next_held            integer,
    next_earliest_expiry timestamptz,
    next_clock           timestamptz,
    next_item_id         text,
    next_payload         jsonb,
    next_priority        integer,
    next_model_prediction jsonb,
    next_model_confidence double precision,
    next_expires_at      timestamptz
);
