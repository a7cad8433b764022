"""The worker's data path metrics against real Kafka and Postgres: ingest lag falls to 0 as the
consumer catches up, a bad item counts one dead letter on the items topic, and the outbox
backlog counts the labels the relay has not delivered yet, down to 0."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from psycopg_pool import ConnectionPool
from test_store_support import (
    create_topics,
    make_config,
    migrated_schema,
    open_pool,
    unique_name,
    wait_for,
)

from devstack.kafka import client_connection
from labelops.api.kafka_connection import KafkaConnection
from labelops.api.worker_configmap import WorkerConfig
from labelops.store import LabelStore
from labelops.worker.ingest import Ingestor
from labelops.worker.metrics import PipelineMetrics, WorkerMetrics
from labelops.worker.outbox import OutboxRelay
from labelops.worker.pipeline import Pipeline

pytestmark = pytest.mark.integration

GOOD_ITEMS = 5


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "metrics") as name:
        yield name


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn) as opened:
        yield opened


@pytest.fixture
def config(schema: str, kafka: KafkaConnection) -> WorkerConfig:
    items, labels = unique_name("items"), unique_name("labels")
    create_topics(kafka.bootstrap, items, labels)
    return make_config(
        schema, topics=(items, labels), consumer_group=unique_name("group"), max_leases=10
    )


def produce_to_one_partition(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]
) -> None:
    # One partition: the consumer fetches it (and learns its high watermark) before the first
    # batch comes back, so the lag after that batch is exact.
    producer = Producer(client_connection(bootstrap).client_config())
    for key, value in messages:
        producer.produce(topic, key=key, value=value, partition=0)
    assert producer.flush(30) == 0, "the test's messages were not all delivered"


def value(metrics: PipelineMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    assert found is not None, f"{name}{labels} is not exposed"
    return found


def test_lag_dead_letters_and_backlog_follow_ingest_and_relay(
    pool: ConnectionPool[Any], config: WorkerConfig, kafka: KafkaConnection
) -> None:
    good = [
        (f"item-{i}".encode(), json.dumps({"id": f"item-{i}", "payload": {"text": "t"}}).encode())
        for i in range(GOOD_ITEMS)
    ]
    bad = (b"broken", b"{not json")
    messages = [*good[:2], bad, *good[2:]]
    produce_to_one_partition(kafka.bootstrap, config.topics.items, messages)

    metrics = PipelineMetrics()
    ingestor = Ingestor(Pipeline(pool, config, kafka, metrics), batch_size=2, writers=1)
    handled = 0
    try:
        handled = wait_for(
            lambda: ingestor.poll_once(timeout=0.5) or None, timeout=60, what="a first batch"
        )
        assert value(metrics, "labelops_worker_ingest_lag_messages") == len(messages) - handled

        def caught_up() -> bool:
            nonlocal handled
            handled += ingestor.poll_once(timeout=0.5)
            return handled >= len(messages)

        wait_for(caught_up, timeout=60, what=f"{len(messages)} messages handled")
    finally:
        ingestor.close()
    assert value(metrics, "labelops_worker_ingest_lag_messages") == 0
    assert value(metrics, "labelops_worker_dead_letters_total", topic="items") == 1
    assert value(metrics, "labelops_worker_dead_letters_total", topic="predictions") == 0

    store = LabelStore(pool, config)
    for n in range(GOOD_ITEMS):
        task = store.claim(f"labeler-{n}")
        assert task is not None
        store.submit(f"labeler-{n}", task.item_id, {"choice": "helpful"})

    relay = OutboxRelay(Pipeline(pool, config, kafka, metrics), batch_size=2)
    assert relay.relay_once() == 2
    assert value(metrics, "labelops_worker_outbox_backlog") == GOOD_ITEMS - 2
    while relay.relay_once():
        pass
    assert value(metrics, "labelops_worker_outbox_backlog") == 0

    # The figures a one-process worker's /metrics serves beside its HTTP metrics.
    exposition = WorkerMetrics(pipeline=metrics).exposition().decode()
    assert "labelops_worker_ingest_lag_messages 0.0" in exposition
    assert "labelops_worker_outbox_backlog 0.0" in exposition
    assert 'labelops_worker_dead_letters_total{topic="items"} 1.0' in exposition
