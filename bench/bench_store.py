"""Benchmark of the storage layer on the real PostgreSQL (and Kafka for the relay).

    LABELOPS_POSTGRES_DSN=... LABELOPS_KAFKA_BOOTSTRAP=... python bench/bench_store.py

Measures, and prints as JSON:
  claim        latency of LabelStore.claim with --items pending items: one labeler at a
               time (the database path alone), then --labelers concurrent labelers
               claiming and submitting in one process (what one worker sees under load);
  submit       store-level accepted labels per second of that concurrent run (no HTTP);
  progress     read_progress latency with --labels accepted labels in the schema;
  relay        outbox relay throughput to the labels topic (skipped without Kafka).

Data for the progress figure is bulk-inserted with generate_series and the counter shards
are set to match: a read only touches the shards, so that is the state that matters. Each
run works in fresh schemas (and a fresh topic) and drops them afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql
from psycopg_pool import ConnectionPool

from devstack.kafka import client_connection
from labelops.api.worker_configmap import ENV_KAFKA_BOOTSTRAP, ENV_POSTGRES_DSN, WorkerConfig
from labelops.store import LabelStore, read_progress
from labelops.store.errors import QuotaExceeded
from labelops.store.migrations import migrate
from labelops.store.progress import PROGRESS_SHARDS
from labelops.worker.outbox import OutboxRelay
from labelops.worker.pipeline import Pipeline


def main() -> None:
    args = parse_args()
    dsn = os.environ[ENV_POSTGRES_DSN]
    bootstrap = os.environ.get(ENV_KAFKA_BOOTSTRAP)
    schemas: list[str] = []
    results: dict[str, Any] = {"machine": machine(dsn)}
    # Every connection opened up front: the figures are of the steady state, not of the
    # pool growing.
    size = args.labelers + 2
    pool: ConnectionPool[Any] = ConnectionPool(dsn, min_size=size, max_size=size, open=False)
    pool.open(wait=True, timeout=30)
    try:
        claim_schema = fresh_schema(dsn, "bench_claim", schemas)
        labels_topic = create_topic(bootstrap) if bootstrap else "bench.labels"
        config = campaign(claim_schema, labels_topic)
        store = LabelStore(pool, config)
        log(f"inserting {args.items} pending items")
        bulk_items(dsn, claim_schema, args.items)
        results["claim"] = {
            "pendingItems": args.items,
            "sequential": claim_latency_sequential(store, args.sequential_claims),
        }
        log(f"{args.labelers} labelers claiming and submitting for {args.duration}s")
        concurrent, submit = concurrent_labeling(store, args.labelers, args.duration)
        results["claim"]["concurrent"] = concurrent
        results["submit"] = submit
        results["relay"] = (
            relay_throughput(pool, config, bootstrap) if bootstrap else "skipped: no Kafka"
        )

        progress_schema = fresh_schema(dsn, "bench_progress", schemas)
        log(f"inserting {args.labels} labels")
        bulk_labels(dsn, progress_schema, args.labels)
        results["progress"] = progress_latency(dsn, progress_schema, args.progress_reads)
    finally:
        pool.close()
        if not args.keep:
            drop_schemas(dsn, schemas)
    results["machine"]["loadAverage1mAtEnd"] = round(os.getloadavg()[0], 2)
    print(json.dumps(results, indent=2))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="pending items for claims")
    parser.add_argument("--labels", type=int, default=1_000_000, help="labels for progress")
    parser.add_argument("--labelers", type=int, default=32, help="concurrent labelers")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of labeling")
    parser.add_argument("--sequential-claims", type=int, default=2000)
    parser.add_argument("--progress-reads", type=int, default=2000)
    parser.add_argument("--keep", action="store_true", help="keep the schemas for inspection")
    return parser.parse_args()


def log(message: str) -> None:
    print(f"# {message}", flush=True)


# --- setup ------------------------------------------------------------------------------


def campaign(schema: str, labels_topic: str) -> WorkerConfig:
    return WorkerConfig.model_validate(
        {
            "namespace": "bench",
            "name": schema.replace("_", "-"),
            "task": {
                "type": "classification",
                "instructions": "Is it helpful?",
                "choices": ["helpful", "unhelpful"],
            },
            "target": {"items": 100_000, "labelsPerItem": 3},
            "quotas": {"perLabelerDaily": 100_000, "maxLeasesPerLabeler": 5},
            "schema": schema,
            "topics": {"items": "bench.items", "labels": labels_topic},
            "consumerGroup": "bench.worker",
        }
    )


def fresh_schema(dsn: str, prefix: str, created: list[str]) -> str:
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, schema)
    created.append(schema)
    return schema


def drop_schemas(dsn: str, schemas: list[str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def create_topic(bootstrap: str) -> str:
    name = f"bench.labels.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(client_connection(bootstrap).client_config())
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(30)
    return name


def bulk_items(dsn: str, schema: str, count: int) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {items} (external_id, payload, priority)"
                " SELECT 'item-' || g, jsonb_build_object('text', 'text of item ' || g),"
                "        (g * 7919) %% 10"
                " FROM generate_series(1, %s) g"
            ).format(items=sql.Identifier(schema, "items")),
            (count,),
        )
        set_counters(conn, schema, items_total=count)
    vacuum_analyze(dsn, schema)


def bulk_labels(dsn: str, schema: str, count: int) -> None:
    per_item = 3
    items = -(-count // per_item)
    t = {name: sql.Identifier(schema, name) for name in ("items", "labels")}
    with psycopg.connect(dsn) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {items} (external_id, payload, label_count, completed_at)"
                " SELECT 'item-' || g, jsonb_build_object('text', 'text ' || g), %s, now()"
                " FROM generate_series(1, %s) g"
            ).format(**t),
            (per_item, items),
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {labels} (id, item_id, labeler, value, ordinal)"
                " SELECT gen_random_uuid(), i.id, 'labeler-' || ((i.id + k) %% 50),"
                '        \'{{"choice": "helpful"}}\'::jsonb, k + 1'
                " FROM {items} i CROSS JOIN generate_series(0, %s) k"
            ).format(**t),
            (per_item - 1,),
        )
        set_counters(
            conn,
            schema,
            items_total=items,
            items_completed=items,
            labels=items * per_item,
            human_labeled=items * per_item,
        )
    vacuum_analyze(dsn, schema)


def set_counters(conn: psycopg.Connection[Any], schema: str, **totals: int) -> None:
    """Spread totals over the shards the way random picks would."""
    for field, total in totals.items():
        share, rest = divmod(total, PROGRESS_SHARDS)
        conn.execute(
            sql.SQL("UPDATE {} SET {} = %s + CASE WHEN shard < %s THEN 1 ELSE 0 END").format(
                sql.Identifier(schema, "progress_shards"), sql.Identifier(field)
            ),
            (share, rest),
        )


def vacuum_analyze(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("items", "labels", "progress_shards"):
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(schema, table)))


def machine(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        settings: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN"
                " ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections')"
            ).fetchall()
        )
        version = conn.execute("SHOW server_version").fetchone()
    with open("/proc/cpuinfo") as cpuinfo:
        models = [
            line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
        ]
    cpu = models[0] if models else platform.processor()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        # The machine may be shared: figures under load are worse than the code's own.
        "loadAverage1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "postgres": version[0] if version else None,
        "postgresSettings": settings,
    }


# --- measurements -----------------------------------------------------------------------


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {
        "count": len(ordered),
        "meanMs": round(statistics.fmean(ordered), 3),
        "p50Ms": at(0.50),
        "p95Ms": at(0.95),
        "p99Ms": at(0.99),
        "maxMs": round(ordered[-1], 3),
    }


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - start) * 1000


def claim_latency_sequential(store: LabelStore, claims: int) -> dict[str, float]:
    """Claims one after another; each labeler takes its 5 leases, then the next one comes.
    The leases stay, so the claim scan walks over more and more leased items."""
    samples = []
    for n in range(claims):
        labeler = f"seq-{n // 5}"
        task, ms = timed(lambda: store.claim(labeler))  # noqa: B023 (called right here)
        assert task is not None, "ran out of pending items"
        samples.append(ms)
    return percentiles(samples)


def concurrent_labeling(
    store: LabelStore, labelers: int, duration: float
) -> tuple[dict[str, float], dict[str, Any]]:
    claim_samples: list[float] = []
    submitted = [0] * labelers
    deadline = time.monotonic() + duration
    start = threading.Barrier(labelers)

    def label(index: int) -> None:
        labeler = f"labeler-{index}"
        start.wait()
        while time.monotonic() < deadline:
            try:
                task, ms = timed(lambda: store.claim(labeler))
            except QuotaExceeded:
                continue
            claim_samples.append(ms)
            if task is None:
                return
            store.submit(labeler, task.item_id, {"choice": "helpful"})
            submitted[index] += 1

    threads = [threading.Thread(target=label, args=(i,)) for i in range(labelers)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    return percentiles(claim_samples), {
        "labelers": labelers,
        "labelsAccepted": sum(submitted),
        "seconds": round(elapsed, 2),
        "labelsPerSecond": round(sum(submitted) / elapsed, 1),
        "note": "claim + submit through LabelStore in one process, no HTTP",
    }


def relay_throughput(
    pool: ConnectionPool[Any], config: WorkerConfig, bootstrap: str
) -> dict[str, float]:
    relay = OutboxRelay(Pipeline(pool, config, client_connection(bootstrap)))
    relayed = 0
    began = time.perf_counter()
    while n := relay.relay_once():
        relayed += n
    elapsed = time.perf_counter() - began
    return {
        "messages": relayed,
        "seconds": round(elapsed, 2),
        "messagesPerSecond": round(relayed / elapsed, 1) if elapsed else 0.0,
    }


def progress_latency(dsn: str, schema: str, reads: int) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        counts = read_progress(conn, schema)
        samples = [timed(lambda: read_progress(conn, schema))[1] for _ in range(reads)]
        conn.rollback()
        _, full_count_ms = timed(
            lambda: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "labels"))
            ).fetchone()
        )
    return {
        "labels": counts.labels,
        **percentiles(samples),
        "forComparisonCountStarMs": round(full_count_ms, 1),
    }


if __name__ == "__main__":
    main()
