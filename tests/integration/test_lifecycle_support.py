"""Helpers of the item-lifecycle tests (models in the loop, data quality; issues 10 and 11):
campaign configs with `model` / `quality`, items with predictions or gold values written the
way ingest writes them, 32 labelers in threads, and the counters recomputed from the tables.
Imported by module name; this module holds no tests."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

from psycopg_pool import ConnectionPool
from test_store_support import make_config, query

from labelops.api.campaign import ModelSpec, QualitySpec
from labelops.api.worker_configmap import WorkerConfig
from labelops.store.items import ItemRecord, write_ingest_batch
from labelops.store.queries import Queries

LABELERS = [f"labeler-{n:02d}" for n in range(32)]
SPAM_TASK = {
    "type": "classification",
    "instructions": "Is the SMS spam?",
    "choices": ["ham", "spam"],
}
GENERATION = 7


def lifecycle_config(
    schema: str,
    *,
    model: dict[str, Any] | None = None,
    quality: dict[str, Any] | None = None,
    blocked: Sequence[str] = (),
    unblocked: Sequence[str] = (),
    labels_per_item: int = 1,
    max_leases: int = 2,
    daily: int = 100000,
    generation: int = GENERATION,
) -> WorkerConfig:
    """make_config's campaign (ham/spam) with the spec's model and quality sections as the
    operator writes them into the worker's config (camelCase, validated)."""
    config = make_config(
        schema, task=SPAM_TASK, labels_per_item=labels_per_item, max_leases=max_leases, daily=daily
    )
    # target.items far beyond the items of a test: claims stop once it is reached.
    target = config.target.model_copy(update={"items": 1_000_000})
    return config.model_copy(
        update={
            "target": target,
            "generation": generation,
            "model": ModelSpec.model_validate(model) if model is not None else None,
            "quality": QualitySpec.model_validate(quality) if quality is not None else None,
            "blocked": list(blocked),
            "unblocked": list(unblocked),
        }
    )


def truth(item_id: str) -> str:
    """The (hidden) right answer of an item: fixed by its id."""
    return "spam" if hashlib.sha256(item_id.encode()).digest()[0] % 3 == 0 else "ham"


def write_items(pool: ConnectionPool[Any], schema: str, records: Sequence[ItemRecord]) -> None:
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        write_ingest_batch(cur, Queries(schema), records, [])


def add_plain_items(pool: ConnectionPool[Any], schema: str, count: int, prefix: str) -> list[str]:
    ids = [f"{prefix}-{i:05d}" for i in range(count)]
    write_items(pool, schema, [ItemRecord(id=i, payload={"text": i}) for i in ids])
    return ids


def add_gold_items(pool: ConnectionPool[Any], schema: str, count: int) -> list[str]:
    ids = [f"gold-{i:04d}" for i in range(count)]
    write_items(
        pool,
        schema,
        [ItemRecord(id=i, payload={"text": i}, gold_value={"choice": truth(i)}) for i in ids],
    )
    return ids


def score_items(
    pool: ConnectionPool[Any],
    schema: str,
    version: str,
    predictions: dict[str, tuple[str, float]],
) -> int:
    """Predictions applied as ingest applies them: the columns set, then after_scoring on
    the ids in the same transaction. Returns what after_scoring auto-accepted."""
    ids = list(predictions)
    with pool.connection() as conn, conn.transaction():
        rows = conn.execute(
            f'UPDATE "{schema}".items i SET model_version = %s,'
            " model_prediction = jsonb_build_object('choice', p.answer),"
            " model_confidence = p.confidence"
            " FROM unnest(%s::text[], %s::text[], %s::float8[]) AS p(id, answer, confidence)"
            " WHERE i.external_id = p.id RETURNING i.id",
            (
                version,
                ids,
                [predictions[i][0] for i in ids],
                [predictions[i][1] for i in ids],
            ),
        ).fetchall()
        row = conn.execute(
            f'SELECT "{schema}".after_scoring(%s::bigint[], 0::smallint)',
            (sorted(r[0] for r in rows),),
        ).fetchone()
    assert row is not None
    return int(row[0])


def run_concurrently(labelers: Sequence[str], work: Callable[[str], None]) -> None:
    """work(labeler) in one thread per labeler, all released at once; re-raise failures."""
    start = threading.Barrier(len(labelers))
    failures: list[BaseException] = []

    def main(labeler: str) -> None:
        start.wait()
        try:
            work(labeler)
        except BaseException as err:  # collected and re-raised in the test's thread
            failures.append(err)

    threads = [threading.Thread(target=main, args=(labeler,)) for labeler in labelers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a labeler thread is still running"
    assert not failures, failures


COUNTERS = (
    "items_total",
    "items_completed",
    "labels",
    "human_labeled",
    "machine_labeled",
    "gold_answers",
    "disputed",
    "scored_by_people",
    "withdrawn",
    "excluded",
    "gold_items",
)


def shard_sums(pool: ConnectionPool[Any], schema: str) -> dict[str, int]:
    columns = ", ".join(f"sum({c})::bigint" for c in COUNTERS)
    [row] = query(pool, schema, f"SELECT {columns} FROM {{schema}}.progress_shards")
    return dict(zip(COUNTERS, (int(v) for v in row), strict=True))


def full_counts(pool: ConnectionPool[Any], schema: str) -> dict[str, int]:
    """What the progress shards must sum to, recomputed from the tables the slow way."""
    [row] = query(
        pool,
        schema,
        "SELECT"
        " (SELECT count(*) FROM {schema}.items WHERE gold_value IS NULL),"
        " (SELECT count(*) FROM {schema}.items WHERE completed_at IS NOT NULL),"
        " (SELECT count(*) FROM {schema}.labels WHERE status = 'counted' AND NOT gold),"
        " (SELECT count(*) FROM {schema}.labels"
        "   WHERE status = 'counted' AND NOT gold AND origin = 'human'),"
        " (SELECT count(*) FROM {schema}.labels"
        "   WHERE status = 'counted' AND NOT gold AND origin = 'machine'),"
        " (SELECT count(*) FROM {schema}.labels WHERE gold),"
        " (SELECT count(*) FROM {schema}.items WHERE disputed),"
        " (SELECT count(*) FROM {schema}.items WHERE completed_at IS NOT NULL"
        "   AND NOT machine_labeled AND model_version IS NOT NULL),"
        " (SELECT count(*) FROM {schema}.labels WHERE status = 'withdrawn'),"
        " (SELECT count(*) FROM {schema}.labels WHERE status = 'excluded'),"
        " (SELECT count(*) FROM {schema}.items WHERE gold_value IS NOT NULL)",
    )
    return dict(zip(COUNTERS, (int(v) for v in row), strict=True))


def assert_counters_match(pool: ConnectionPool[Any], schema: str) -> None:
    assert shard_sums(pool, schema) == full_counts(pool, schema)


def assert_item_counts_match(pool: ConnectionPool[Any], schema: str) -> None:
    """Every item's label_count / lease_count equal its counted labels / reserved leases."""
    drifted = query(
        pool,
        schema,
        "SELECT i.external_id, i.label_count, i.lease_count,"
        " (SELECT count(*) FROM {schema}.labels l WHERE l.item_id = i.id"
        "   AND l.status = 'counted'),"
        " (SELECT count(*) FROM {schema}.leases e WHERE e.item_id = i.id AND e.reserved)"
        " FROM {schema}.items i",
    )
    wrong = [r for r in drifted if (r[1], r[2]) != (r[3], r[4])]
    assert not wrong, f"(item, label_count, lease_count, labels, leases) drifted: {wrong[:5]}"


def outbox_messages(pool: ConnectionPool[Any], schema: str) -> list[dict[str, Any]]:
    rows = query(pool, schema, "SELECT message FROM {schema}.outbox ORDER BY id")
    return [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]
