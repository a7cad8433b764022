"""Ingest from the real items topic: idempotent under redelivery, dead letters, offsets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from psycopg_pool import ConnectionPool
from test_store_support import (
    create_topics,
    make_config,
    migrated_schema,
    open_pool,
    query,
    unique_name,
    wait_for,
)

from labelops.api.worker_configmap import WorkerConfig
from labelops.store import LabelStore
from labelops.store.migrations import migrate
from labelops.store.progress import read_progress
from labelops.worker.ingest import Ingestor

pytestmark = pytest.mark.integration


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "ingest") as name:
        yield name


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn) as opened:
        yield opened


@pytest.fixture
def config(schema: str, kafka_bootstrap: str) -> WorkerConfig:
    items, labels = unique_name("items"), unique_name("labels")
    create_topics(kafka_bootstrap, items, labels)
    return make_config(schema, topics=(items, labels), consumer_group=unique_name("group"))


def item_message(item_id: str, text: str = "some text", **extra: Any) -> bytes:
    return json.dumps({"id": item_id, "payload": {"text": text}, **extra}).encode()


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0, "the test's messages were not all delivered"


def ingest_until(ingestor: Ingestor, condition: Any, what: str) -> None:
    def step() -> bool:
        ingestor.poll_once(timeout=0.5)
        return bool(condition())

    wait_for(step, timeout=60, what=what)


def handle(ingestor: Ingestor, messages: int) -> None:
    """Poll until the ingestor handled (ingested or dead-lettered) this many messages."""
    handled = 0

    def step() -> bool:
        nonlocal handled
        handled += ingestor.poll_once(timeout=0.5)
        return handled >= messages

    wait_for(step, timeout=60, what=f"{messages} messages handled")


def count(pool: ConnectionPool[Any], schema: str, table: str) -> int:
    return int(query(pool, schema, "SELECT count(*) FROM {schema}." + table)[0][0])


def test_redelivered_items_are_stored_once(
    pool: ConnectionPool[Any], schema: str, config: WorkerConfig, kafka_bootstrap: str
) -> None:
    batch = [(f"item-{i}".encode(), item_message(f"item-{i}")) for i in range(50)]
    produce(kafka_bootstrap, config.topics.items, batch + batch[:10])
    ingestor = Ingestor(pool, config, kafka_bootstrap)
    try:
        ingest_until(ingestor, lambda: count(pool, schema, "items") == 50, "50 items")
        # Everything again: the same messages produced twice more ...
        produce(kafka_bootstrap, config.topics.items, batch)
        handle(ingestor, len(batch))
    finally:
        ingestor.close()
    # ... and the whole topic re-read by a consumer group that starts from scratch.
    again = Ingestor(
        pool, config.model_copy(update={"consumer_group": unique_name("g")}), kafka_bootstrap
    )
    try:
        handle(again, 2 * len(batch) + 10)
    finally:
        again.close()

    assert count(pool, schema, "items") == 50
    with pool.connection() as conn:
        assert read_progress(conn, schema).items_total == 50
    assert count(pool, schema, "dead_letters") == 0


def test_offsets_are_committed_after_the_database_commit_only(
    postgres_dsn: str, pool: ConnectionPool[Any], config: WorkerConfig, kafka_bootstrap: str
) -> None:
    produce(kafka_bootstrap, config.topics.items, [(b"a", item_message("a"))])
    missing = unique_name("notyet")
    broken = config.model_copy(update={"schema_": missing})
    ingestor = Ingestor(pool, broken, kafka_bootstrap)
    try:

        def write_fails() -> bool:
            try:
                ingestor.poll_once(timeout=0.5)
            except psycopg.errors.UndefinedTable:
                return True
            return False

        wait_for(write_fails, timeout=60, what="the write into a missing schema to fail")
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            migrate(conn, missing)
        # The failed batch was not committed: the same consumer reads it again.
        ingest_until(ingestor, lambda: count(pool, missing, "items") == 1, "the retried item")
    finally:
        ingestor.close()
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{missing}" CASCADE')  # our own generated name


def test_malformed_messages_are_dead_lettered_and_ingest_goes_on(
    pool: ConnectionPool[Any], schema: str, config: WorkerConfig, kafka_bootstrap: str
) -> None:
    bad = [
        (b"x1", b"{not json"),
        (b"x2", json.dumps({"payload": {"text": "t"}}).encode()),
        (b"other", item_message("x3")),
        (None, item_message("x4")),
        (b"x5", json.dumps({"id": "x5", "payload": {"prompt": "no text"}}).encode()),
        (b"x6", item_message("x6", text="nul \u0000 inside")),
        (b"x7", None),
        (b"x8", b'{"id": "x8", "payload": {"text": "t"}, "model": {"confidence": NaN}}'),
        (b"x9", item_message("x9", priority="high")),
    ]
    good = (
        b"ok",
        item_message("ok", priority=3, model={"prediction": "helpful", "confidence": 0.9}),
    )
    produce(kafka_bootstrap, config.topics.items, [*bad, good])
    ingestor = Ingestor(pool, config, kafka_bootstrap)
    try:
        ingest_until(ingestor, lambda: count(pool, schema, "items") == 1, "the good item")
    finally:
        ingestor.close()

    reasons = dict(
        query(
            pool,
            schema,
            "SELECT convert_from(raw_key, 'UTF8'), reason FROM {schema}.dead_letters"
            " WHERE raw_key IS NOT NULL",
        )
    )
    assert "value is not JSON" in reasons["x1"]
    assert "'id' is a required property" in reasons["x2"]
    assert "key 'other' does not match id 'x3'" in reasons["other"]
    assert "/payload: 'text' is a required property" in reasons["x5"]
    assert "/payload/text: contains the NUL character" in reasons["x6"]
    assert "no value" in reasons["x7"]
    assert "NaN is not a JSON number" in reasons["x8"]
    assert "/priority: 'high' is not of type 'integer'" in reasons["x9"]
    [(keyless,)] = query(
        pool, schema, "SELECT reason FROM {schema}.dead_letters WHERE raw_key IS NULL"
    )
    assert "no key" in keyless
    with pool.connection() as conn:
        assert read_progress(conn, schema).dead_lettered == len(bad)

    [(priority, prediction, confidence)] = query(
        pool, schema, "SELECT priority, model_prediction, model_confidence FROM {schema}.items"
    )
    assert (priority, prediction, confidence) == (3, "helpful", 0.9)

    again = Ingestor(
        pool, config.model_copy(update={"consumer_group": unique_name("g")}), kafka_bootstrap
    )
    try:
        handle(again, len(bad) + 1)
    finally:
        again.close()
    assert count(pool, schema, "dead_letters") == len(bad), "a bad message is recorded once"
    with pool.connection() as conn:
        assert read_progress(conn, schema).dead_lettered == len(bad)


def test_an_item_changes_only_until_a_labeler_has_seen_it(
    pool: ConnectionPool[Any], schema: str, config: WorkerConfig, kafka_bootstrap: str
) -> None:
    store = LabelStore(pool, config)
    ingestor = Ingestor(pool, config, kafka_bootstrap)

    def item_text() -> Any:
        return query(pool, schema, "SELECT payload->>'text', priority FROM {schema}.items")

    try:
        produce(kafka_bootstrap, config.topics.items, [(b"a", item_message("a", "v1"))])
        ingest_until(ingestor, lambda: item_text() == [("v1", 0)], "v1")
        produce(kafka_bootstrap, config.topics.items, [(b"a", item_message("a", "v2", priority=7))])
        ingest_until(ingestor, lambda: item_text() == [("v2", 7)], "the update to v2")

        task = store.claim("ann")
        assert task is not None and task.payload == {"text": "v2"}
        produce(kafka_bootstrap, config.topics.items, [(b"a", item_message("a", "v3"))])
        handle(ingestor, 1)
        assert item_text() == [("v2", 7)], "a leased item keeps what the labeler sees"
    finally:
        ingestor.close()
    with pool.connection() as conn:
        assert read_progress(conn, schema).items_total == 1


def test_a_message_the_database_refuses_fails_only_itself_in_a_large_batch(
    pool: ConnectionPool[Any], schema: str, config: WorkerConfig, kafka_bootstrap: str
) -> None:
    # Python's json takes a lone surrogate, jsonb does not: only the database can refuse it.
    refused = b'{"id": "bad", "payload": {"text": "\\ud800"}}'
    good = [(f"g{i}".encode(), item_message(f"g{i}")) for i in range(3000)]
    produce(kafka_bootstrap, config.topics.items, [*good[:1500], (b"bad", refused), *good[1500:]])
    ingestor = Ingestor(pool, config, kafka_bootstrap)
    try:
        handle(ingestor, len(good) + 1)
    finally:
        ingestor.close()
    assert count(pool, schema, "items") == len(good)
    [(key, reason)] = query(
        pool, schema, "SELECT convert_from(raw_key, 'UTF8'), reason FROM {schema}.dead_letters"
    )
    assert key == "bad" and "database refused the" in reason and "surrogate" in reason
    with pool.connection() as conn:
        counts = read_progress(conn, schema)
    assert (counts.items_total, counts.dead_lettered) == (len(good), 1)
