"""Helpers shared by the store, ingest and outbox tests (imported by module name; this
module holds no tests). Every test gets its own uniquely named schema and topics."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import psycopg
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql
from psycopg_pool import ConnectionPool

from devstack.kafka import client_connection
from devstack.procs import TimedOut, poll_until
from labelops.api.worker_configmap import WorkerConfig
from labelops.store.items import ItemRecord, write_ingest_batch
from labelops.store.migrations import migrate
from labelops.store.queries import Queries

T = TypeVar("T")

CLASSIFICATION_TASK = {
    "type": "classification",
    "instructions": "Is the text helpful?",
    "choices": ["helpful", "unhelpful"],
}


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def make_config(
    schema: str,
    *,
    task: dict[str, Any] | None = None,
    labels_per_item: int = 1,
    max_leases: int = 5,
    daily: int = 500,
    lease_seconds: float = 600,
    paused: bool = False,
    topics: tuple[str, str] = ("test.items", "test.labels"),
    consumer_group: str = "test.worker",
) -> WorkerConfig:
    config = WorkerConfig.model_validate(
        {
            "namespace": "tests",
            "name": schema.replace("_", "-"),
            "task": task or CLASSIFICATION_TASK,
            # Far beyond the items of a test: claims stop once target.items are complete.
            "target": {"items": 1_000_000, "labelsPerItem": labels_per_item},
            "quotas": {"perLabelerDaily": daily, "maxLeasesPerLabeler": max_leases},
            "schema": schema,
            "topics": {"items": topics[0], "labels": topics[1]},
            "consumerGroup": consumer_group,
            "paused": paused,
        }
    )
    # The API refuses leases under 10 s; tests shorten them to watch expiry happen.
    quotas = config.quotas.model_copy(update={"lease_seconds": lease_seconds})
    return config.model_copy(update={"quotas": quotas})


@contextmanager
def migrated_schema(admin_dsn: str, prefix: str = "t") -> Iterator[str]:
    schema = unique_name(prefix)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        migrate(conn, schema)
    try:
        yield schema
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def open_pool(dsn: str, size: int = 8) -> Iterator[ConnectionPool[Any]]:
    pool: ConnectionPool[Any] = ConnectionPool(dsn, min_size=1, max_size=size, open=False)
    pool.open(wait=True, timeout=30)
    try:
        yield pool
    finally:
        pool.close()


def add_items(
    pool: ConnectionPool[Any],
    schema: str,
    count: int,
    *,
    prefix: str = "item",
    priority: Callable[[int], int] = lambda i: 0,
) -> list[str]:
    """Items through the ingest write path; returns their ids in insertion order."""
    ids = [f"{prefix}-{i:05d}" for i in range(count)]
    records = [
        ItemRecord(id=item_id, payload={"text": f"text {i}"}, priority=priority(i))
        for i, item_id in enumerate(ids)
    ]
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        write_ingest_batch(cur, Queries(schema), records, [])
    return ids


def query(pool: ConnectionPool[Any], schema: str, template: str, *params: Any) -> list[Any]:
    """Run `template` with {schema} replaced by the quoted schema name."""
    statement = sql.SQL(template).format(schema=sql.Identifier(schema))
    with pool.connection() as conn:
        return conn.execute(statement, params).fetchall()


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll condition() until it returns something truthy; fail naming what was awaited."""
    try:
        return cast(T, poll_until(condition, timeout))
    except TimedOut:
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}") from None


# --- Kafka -----------------------------------------------------------------------------


def create_topics(bootstrap: str, *names: str, partitions: int = 3) -> None:
    admin = AdminClient(client_connection(bootstrap).client_config())
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
    )
    for future in futures.values():
        future.result(timeout=30)


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 60) -> list[Any]:
    """All messages of topic from the beginning, once at least `expect` have arrived (and
    a short quiet period has passed, so duplicates are seen too)."""
    consumer = Consumer(
        client_connection(bootstrap).client_config(
            {
                "group.id": unique_name("reader"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(1000, 1.0) if m.error() is None]
            messages += batch
            if len(messages) >= expect and not batch:
                return messages
        raise AssertionError(
            f"topic {topic} holds {len(messages)} messages after {timeout:.0f}s, "
            f"expected at least {expect}"
        )
    finally:
        consumer.close()


def label_ids_on(messages: list[Any]) -> list[str]:
    return [json.loads(m.value())["labelId"] for m in messages]
