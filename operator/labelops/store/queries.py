"""Every SQL statement the worker runs against a campaign's schema, composed once per schema.

Templates name tables and functions as {items}, {claim_task}, ... and are formatted with
schema-qualified, quoted identifiers (psycopg.sql.Identifier), then rendered to bytes once;
parameters are always bound, never formatted. Claiming, submitting and releasing are
functions of the schema (store/functions/, one file each); the statements here call
them.
"""

from __future__ import annotations

from typing import LiteralString

from psycopg import sql

from labelops.store.progress import bump_statement

# Tables and functions of a campaign's schema, as the templates name them.
SCHEMA_OBJECTS = (
    "items",
    "leases",
    "skips",
    "labels",
    "outbox",
    "dead_letters",
    "labeler_days",
    "progress_shards",
    "claim_task",
    "accept_label",
    "accept_label_and_claim",
    "accept_labels",
    "claim_tasks",
    "release_task",
)

UTC_TODAY: LiteralString = "(now() AT TIME ZONE 'UTC')::date"


class Queries:
    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.bump_progress = bump_statement(schema).as_bytes(None)

        # --- claim, submit, release: functions of the schema (store/functions/claim_task.sql,
        # accept_label.sql, accept_label_and_claim.sql), one statement each, so that
        # every row lock is released by the server itself. Those that run for every label
        # bind positional parameters (a tuple costs less to bind than a dict), in the order
        # of the function's. The payload comes as text: the store parses it itself and so
        # knows its size.
        self.claim_task = self._compose(
            "SELECT verdict, labels_today, held, earliest_expiry, clock, item_id, payload::text,"
            "       priority, model_prediction, model_confidence, expires_at, refusal"
            " FROM {claim_task}(%s, %s, %s, %s, %s, %s)"
        )
        # The slow path of a submission (labelops.store.submissions): the payload to
        # validate against, read without a lock (it no longer changes once the item has a
        # lease row, see update_untouched_items), and an earlier label under the
        # Idempotency-Key.
        self.item_to_label = self._compose(
            "SELECT payload FROM {items} WHERE external_id = %(item_id)s"
        )
        # The payloads of items these labelers hold lease rows on (leased_payloads.py: while
        # the row exists, ingest leaves the item as it is), for LabelStore.recall_leased.
        self.leased_payloads = self._compose(
            "SELECT i.external_id, l.labeler, i.payload::text"
            " FROM unnest(%s::text[], %s::text[]) AS s(labeler, item_id)"
            " JOIN {items} i ON i.external_id = s.item_id"
            " JOIN {leases} l ON l.item_id = i.id AND l.labeler = s.labeler"
        )
        self.label_by_idempotency_key = self._compose(
            "SELECT l.id::text, i.external_id, l.value, l.created_at, l.ordinal"
            " FROM {labels} l JOIN {items} i ON i.id = l.item_id"
            " WHERE l.labeler = %(labeler)s AND l.idempotency_key = %(key)s"
        )
        self.accept_label = self._compose(
            "SELECT verdict, label_id::text, created_at, ordinal, replay_label_id::text,"
            "       replay_item_id, replay_value, replay_created_at, replay_ordinal,"
            "       refusal, completed"
            " FROM {accept_label}(%s, %s, %s, %s, %s, %s, %s::text, %s, %s, %s::smallint)"
        )
        self.accept_label_and_claim = self._compose(
            "SELECT verdict, label_id::text, created_at, ordinal, replay_label_id::text,"
            "       replay_item_id, replay_value, replay_created_at, replay_ordinal,"
            "       next_verdict, next_labels_today, next_held, next_earliest_expiry,"
            "       next_clock, next_item_id, next_payload::text, next_priority,"
            "       next_model_prediction, next_model_confidence, next_expires_at,"
            "       refusal, completed"
            " FROM {accept_label_and_claim}(%s, %s, %s, %s, %s, %s, %s::text, %s, %s,"
            "                               %s::smallint, %s, %s, %s)"
        )
        # Many submissions at once (accept_labels.sql, claim_tasks.sql; store.batching): the
        # columns of accept_label_and_claim after the element's 1-based position.
        self.accept_labels = self._compose(
            "SELECT element, verdict, label_id::text, created_at, ordinal,"
            "       replay_label_id::text, replay_item_id, replay_value, replay_created_at,"
            "       replay_ordinal, next_verdict, next_labels_today, next_held,"
            "       next_earliest_expiry, next_clock, next_item_id, next_payload::text,"
            "       next_priority, next_model_prediction, next_model_confidence, next_expires_at,"
            "       refusal, completed"
            " FROM {accept_labels}(%s::text[], %s::text[], %s::jsonb[], %s::text[], %s::text[],"
            "                      %s::boolean[], %s, %s, %s, %s, %s::smallint, %s, %s, %s)"
        )
        self.claim_tasks = self._compose(
            "SELECT element, verdict, labels_today, held, earliest_expiry, clock, item_id,"
            "       payload::text, priority, model_prediction, model_confidence, expires_at,"
            "       refusal"
            " FROM {claim_tasks}(%s::text[], %s, %s, %s, %s, %s)"
        )
        self.release_task = self._compose(
            "SELECT item_found, had_lease FROM {release_task}(%(item_id)s, %(labeler)s)"
        )

        # --- me -----------------------------------------------------------------------
        self.labeler_stats = self._compose(
            "SELECT"
            "  coalesce((SELECT labels FROM {labeler_days}"
            f"            WHERE labeler = %(labeler)s AND day = {UTC_TODAY}), 0),"
            "  coalesce((SELECT sum(labels) FROM {labeler_days}"
            "            WHERE labeler = %(labeler)s), 0)::bigint,"
            "  (SELECT count(*) FROM {leases}"
            "   WHERE labeler = %(labeler)s AND reserved AND expires_at > now()),"
            "  now()"
        )

        # --- labelsPerItem grew: completed items with fewer labels are open again -------
        self.reopen_items = self._compose(
            "UPDATE {items} SET completed_at = NULL"
            " WHERE completed_at IS NOT NULL AND label_count < %(labels_per_item)s"
            # A model's label completes an item alone, whatever labelsPerItem says.
            " AND NOT machine_labeled"
            " RETURNING id"
        )

        # --- ingest -------------------------------------------------------------------
        # %(batch)s is a JSON array of {id, payload, priority, prediction, confidence},
        # unique by id and sorted by id (rows are locked in one order by every ingestor).
        batch_rows = (
            "jsonb_to_recordset(%(batch)s) AS m(id text, payload jsonb, priority integer,"
            " prediction jsonb, confidence double precision)"
        )
        self.insert_new_items = self._compose(
            "INSERT INTO {items}"
            " (external_id, payload, priority, model_prediction, model_confidence)"
            " SELECT m.id, m.payload, m.priority, m.prediction, m.confidence"
            f" FROM {batch_rows} ORDER BY m.id"
            " ON CONFLICT (external_id) DO NOTHING"
            " RETURNING external_id"
        )
        # An item keeps what labelers saw: it is updated only while nobody has leased or
        # labeled it, and a redelivery of the same content writes nothing. lease_count is
        # checked besides the leases rows: after waiting for a concurrent claim's row lock
        # the row's own columns are re-read, while the subquery still sees the old snapshot.
        self.update_untouched_items = self._compose(
            "UPDATE {items} i SET payload = m.payload, priority = m.priority,"
            "       model_prediction = m.prediction, model_confidence = m.confidence,"
            "       updated_at = now()"
            f" FROM {batch_rows}"
            " WHERE i.external_id = m.id AND i.label_count = 0 AND i.lease_count = 0"
            "   AND NOT EXISTS (SELECT 1 FROM {leases} l WHERE l.item_id = i.id)"
            "   AND (i.payload, i.priority, i.model_prediction, i.model_confidence)"
            "       IS DISTINCT FROM (m.payload, m.priority, m.prediction, m.confidence)"
            " RETURNING i.external_id"
        )
        self.insert_dead_letter = self._compose(
            "INSERT INTO {dead_letters}"
            " (source_topic, source_partition, source_offset, raw_key, raw_value, reason)"
            " VALUES (%(topic)s, %(partition)s, %(offset)s, %(key)s, %(value)s, %(reason)s)"
            " ON CONFLICT ON CONSTRAINT dead_letters_position_unique DO NOTHING"
        )

        # --- outbox relay ---------------------------------------------------------------
        self.lock_outbox_batch = self._compose(
            "SELECT id, label_id::text, message_key, message::text FROM {outbox}"
            " ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
        )
        self.delete_outbox_rows = self._compose("DELETE FROM {outbox} WHERE id = ANY(%(ids)s)")

        self.ping = b"SELECT 1"

    def _compose(self, template: LiteralString) -> bytes:
        # Rendered once: composing on every execute costs more than some of the queries.
        names = {name: sql.Identifier(self.schema, name) for name in SCHEMA_OBJECTS}
        return sql.SQL(template).format(**names).as_bytes(None)
