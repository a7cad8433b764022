"""Campaign progress counters: written in the same transaction as the change they count,
read in O(1).

One counter row would make every submission queue behind every other one, so the counters
live in PROGRESS_SHARDS rows; a writer adds its deltas to one shard picked at random and a
reader sums the fixed set of shards, never counting labels or items. Because the deltas
commit or roll back with the change itself, the sums are exact at any moment.

Accepted labels are counted by the schema's accept_label function (functions/accept_label.sql);
ingest, dead letters and rejections through bump_counters / bump_statement here.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

# Must match the rows 0001_initial.sql creates; a bump on a missing shard row would still
# be kept (the bump is an upsert), a test checks they agree.
PROGRESS_SHARDS = 16

COUNTER_FIELDS = (
    "items_total",
    "items_completed",
    "labels",
    "human_labeled",
    "machine_labeled",
    "rejected",
    "dead_lettered",
    # Added by 0002_models_and_quality.sql; appended so positional reads keep their order.
    "gold_answers",
    "disputed",
    "scored_by_people",
    "withdrawn",
    "excluded",
    "gold_items",
)


@dataclass(frozen=True)
class ProgressCounts:
    """Totals of a campaign.

    items_total: distinct items ingested; items_completed: items that reached
    labelsPerItem; labels: accepted labels (= human_labeled + machine_labeled);
    rejected: submissions refused by label validation; dead_lettered: item messages
    that could not be ingested; gold_answers: labels given on gold items; disputed: items
    that completed at overlap.max without agreement; scored_by_people: items people completed
    although a model had scored them (audits included); withdrawn / excluded: labels that
    stopped counting (a braked model's, a blocked labeler's); gold_items: gold items
    ingested, which items_total leaves out.
    """

    items_total: int = 0
    items_completed: int = 0
    labels: int = 0
    human_labeled: int = 0
    machine_labeled: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    gold_answers: int = 0
    disputed: int = 0
    scored_by_people: int = 0
    withdrawn: int = 0
    excluded: int = 0
    gold_items: int = 0


# The same shape, read as "what to add".
CounterDelta = ProgressCounts


def is_zero(delta: CounterDelta) -> bool:
    return not any(dataclasses.astuple(delta))


def bump_statement(schema: str) -> sql.Composed:
    """Upsert adding %(items_total)s ... to the shard %(shard)s."""
    columns = sql.SQL(", ").join(sql.Identifier(f) for f in COUNTER_FIELDS)
    values = sql.SQL(", ").join(sql.Placeholder(f) for f in COUNTER_FIELDS)
    additions = sql.SQL(", ").join(
        sql.SQL("{col} = {table}.{col} + EXCLUDED.{col}").format(
            col=sql.Identifier(f), table=sql.Identifier("progress_shards")
        )
        for f in COUNTER_FIELDS
    )
    return sql.SQL(
        "INSERT INTO {table} AS progress_shards (shard, {columns}) VALUES (%(shard)s, {values})"
        " ON CONFLICT (shard) DO UPDATE SET {additions}"
    ).format(
        table=sql.Identifier(schema, "progress_shards"),
        columns=columns,
        values=values,
        additions=additions,
    )


def bump_params(delta: CounterDelta) -> dict[str, Any]:
    return {"shard": random.randrange(PROGRESS_SHARDS), **dataclasses.asdict(delta)}


def bump_counters(cur: psycopg.Cursor[Any], schema: str, delta: CounterDelta) -> None:
    """Add delta to one shard, inside the caller's transaction. Call it last in the
    transaction: every writer then takes the shard lock after all its other locks, so
    shard locks never take part in a lock cycle."""
    if not is_zero(delta):
        cur.execute(bump_statement(schema), bump_params(delta))


def read_progress(conn: psycopg.Connection[Any], schema: str) -> ProgressCounts:
    """The campaign's counters: a sum over the fixed shard rows, O(1) in labels and items."""
    sums = sql.SQL(", ").join(
        sql.SQL("coalesce(sum({}), 0)::bigint").format(sql.Identifier(f)) for f in COUNTER_FIELDS
    )
    row = conn.execute(
        sql.SQL("SELECT {} FROM {}").format(sums, sql.Identifier(schema, "progress_shards"))
    ).fetchone()
    assert row is not None  # an aggregate always returns one row
    return ProgressCounts(*(int(v) for v in row))
