"""Writing ingested items and dead letters, inside a transaction the caller runs.

Items are upserted by external id: a new id inserts; a known id is updated (payload,
priority, model) only while nobody has leased or labeled it, so what a labeler saw and
labeled never changes under them; later updates of such an item are ignored. Redelivery
of the same message writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from labelops.store.progress import CounterDelta, bump_counters
from labelops.store.queries import Queries


@dataclass(frozen=True)
class ItemRecord:
    """One well-formed item message."""

    id: str
    payload: dict[str, Any]
    priority: int = 0
    model_prediction: Any = None
    model_confidence: float | None = None


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


def write_ingest_batch(
    cur: psycopg.Cursor[Any],
    q: Queries,
    items: list[ItemRecord],
    dead_letters: list[DeadLetter],
) -> IngestOutcome:
    """Upsert items (unique ids; the caller keeps the newest message per id) and record
    dead letters, counting both in the progress counters."""
    inserted = updated = 0
    if items:
        # Sorted so two ingestors overlapping during a rebalance lock rows in one order.
        batch = Jsonb(
            [
                {
                    "id": item.id,
                    "payload": item.payload,
                    "priority": item.priority,
                    "prediction": item.model_prediction,
                    "confidence": item.model_confidence,
                }
                for item in sorted(items, key=lambda i: i.id)
            ]
        )
        inserted = len(cur.execute(q.insert_new_items, {"batch": batch}).fetchall())
        updated = len(cur.execute(q.update_untouched_items, {"batch": batch}).fetchall())
    recorded = 0
    for letter in dead_letters:
        cur.execute(
            q.insert_dead_letter,
            {
                "topic": letter.topic,
                "partition": letter.partition,
                "offset": letter.offset,
                "key": letter.key,
                "value": letter.value,
                "reason": letter.reason,
            },
        )
        recorded += cur.rowcount
    bump_counters(cur, q.schema, CounterDelta(items_total=inserted, dead_lettered=recorded))
    return IngestOutcome(inserted=inserted, updated=updated, dead_lettered=recorded)
