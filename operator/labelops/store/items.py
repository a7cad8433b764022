"""Writing ingested items and dead letters, inside a transaction the caller runs.

Items are upserted by external id: a new id inserts; a known id is updated (payload,
priority, model) only while nobody has leased or labeled it, so what a labeler saw and
labeled never changes under them; later updates of such an item are ignored. Redelivery
of the same message writes nothing.

A batch costs the database one statement, whatever its size: the messages travel as one
JSON array built from their raw bytes (no serialising again in Python), PostgreSQL parses
it once into a materialised row set, and a single statement inserts the new ids and
updates the untouched known ones (rows an INSERT of the same statement adds are not seen
by its UPDATE, so no item is written twice). Dead letters are one INSERT from arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
import psycopg
from psycopg import sql

from labelops.store.progress import CounterDelta, bump_counters
from labelops.store.queries import Queries


@dataclass(frozen=True)
class ItemRecord:
    """One well-formed item, as Python values."""

    id: str
    payload: dict[str, Any]
    priority: int = 0
    model_prediction: Any = None
    model_confidence: float | None = None

    def as_raw(self) -> RawItem:
        document: dict[str, Any] = {"id": self.id, "payload": self.payload}
        if self.priority:
            document["priority"] = self.priority
        if self.model_prediction is not None or self.model_confidence is not None:
            document["model"] = {
                "prediction": self.model_prediction,
                "confidence": self.model_confidence,
            }
        return RawItem(self.id, orjson.dumps(document))


class RawItem(NamedTuple):
    """One well-formed item message: its id and the JSON object it came as
    ({"id", "payload", "priority"?, "model"?: {"prediction", "confidence"}}). A tuple:
    ingest makes one per message, and a frozen dataclass costs several times more."""

    id: str
    raw: bytes


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be ingested, kept with why, and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str


@dataclass(frozen=True)
class IngestOutcome:
    inserted: int
    updated: int
    dead_lettered: int  # newly recorded (a redelivered bad message counts once)

    def __add__(self, other: IngestOutcome) -> IngestOutcome:
        return IngestOutcome(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.dead_lettered + other.dead_lettered,
        )


class IngestStatements:
    """The ingest statements of one campaign schema, composed once."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        names = {name: sql.Identifier(schema, name) for name in ("items", "leases", "dead_letters")}
        # %s: a JSON array of item messages, unique by id. Rows are inserted in id order
        # so two ingestors overlapping during a rebalance lock them in one order.
        self.upsert_items = (
            sql.SQL(
                "WITH m AS MATERIALIZED ("
                "  SELECT b.id, b.payload, coalesce(b.priority, 0) AS priority,"
                "         b.model -> 'prediction' AS prediction,"
                "         (b.model ->> 'confidence')::double precision AS confidence"
                "  FROM jsonb_to_recordset(%s::jsonb)"
                "       AS b(id text, payload jsonb, priority integer, model jsonb)"
                "), inserted AS ("
                "  INSERT INTO {items}"
                "   (external_id, payload, priority, model_prediction, model_confidence)"
                "  SELECT id, payload, priority, prediction, confidence FROM m ORDER BY id"
                "  ON CONFLICT (external_id) DO NOTHING"
                "  RETURNING 1"
                # An item keeps what labelers saw: it is updated only while nobody has
                # leased or labeled it, and a redelivery of the same content writes nothing.
                # lease_count is checked besides the leases rows: after waiting for a
                # concurrent claim's row lock the row's own columns are re-read, while the
                # subquery still sees the old snapshot.
                "), updated AS ("
                "  UPDATE {items} i SET payload = m.payload, priority = m.priority,"
                "         model_prediction = m.prediction, model_confidence = m.confidence,"
                "         updated_at = now()"
                "  FROM m"
                "  WHERE i.external_id = m.id AND i.label_count = 0 AND i.lease_count = 0"
                "    AND NOT EXISTS (SELECT 1 FROM {leases} l WHERE l.item_id = i.id)"
                "    AND (i.payload, i.priority, i.model_prediction, i.model_confidence)"
                "        IS DISTINCT FROM (m.payload, m.priority, m.prediction, m.confidence)"
                "  RETURNING 1"
                ")"
                " SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM updated)"
            )
            .format(**names)
            .as_bytes(None)
        )
        self.insert_dead_letters = (
            sql.SQL(
                "INSERT INTO {dead_letters}"
                " (source_topic, source_partition, source_offset, raw_key, raw_value, reason)"
                " SELECT * FROM unnest(%s::text[], %s::integer[], %s::bigint[], %s::bytea[],"
                "                      %s::bytea[], %s::text[])"
                " ON CONFLICT ON CONSTRAINT dead_letters_position_unique DO NOTHING"
            )
            .format(**names)
            .as_bytes(None)
        )


_STATEMENTS: dict[str, IngestStatements] = {}


def statements_for(schema: str) -> IngestStatements:
    found = _STATEMENTS.get(schema)
    if found is None:
        found = _STATEMENTS[schema] = IngestStatements(schema)
    return found


def write_ingest_batch(
    cur: psycopg.Cursor[Any],
    q: Queries,
    items: Sequence[ItemRecord],
    dead_letters: Sequence[DeadLetter],
) -> IngestOutcome:
    """write_raw_batch for items given as Python values (tests and seeding)."""
    return write_raw_batch(
        cur, statements_for(q.schema), [item.as_raw() for item in items], dead_letters
    )


def write_raw_batch(
    cur: psycopg.Cursor[Any],
    statements: IngestStatements,
    items: Sequence[RawItem],
    dead_letters: Sequence[DeadLetter],
) -> IngestOutcome:
    """Upsert items (unique ids; the caller keeps the newest message per id) and record
    dead letters, counting both in the progress counters."""
    inserted = updated = 0
    if items:
        ordered = sorted(items, key=lambda i: i.id)
        batch = b"[" + b",".join(item.raw for item in ordered) + b"]"
        row = cur.execute(statements.upsert_items, (batch.decode(),)).fetchone()
        assert row is not None  # the statement always returns its one row of counts
        inserted, updated = int(row[0]), int(row[1])
    recorded = 0
    if dead_letters:
        cur.execute(
            statements.insert_dead_letters,
            (
                [d.topic for d in dead_letters],
                [d.partition for d in dead_letters],
                [d.offset for d in dead_letters],
                [d.key for d in dead_letters],
                [d.value for d in dead_letters],
                [d.reason for d in dead_letters],
            ),
        )
        recorded = cur.rowcount
    bump_counters(
        cur, statements.schema, CounterDelta(items_total=inserted, dead_lettered=recorded)
    )
    return IngestOutcome(inserted=inserted, updated=updated, dead_lettered=recorded)
