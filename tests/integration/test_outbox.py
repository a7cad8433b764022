"""Outbox relay against the real labels topic: complete, shareable, and crash-proof."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg_pool import ConnectionPool
from test_store_support import (
    add_items,
    create_topics,
    label_ids_on,
    make_config,
    migrated_schema,
    open_pool,
    query,
    read_topic,
    unique_name,
    wait_for,
)

from labelops.api.kafka_connection import KafkaConnection
from labelops.api.worker_configmap import WorkerConfig
from labelops.store import LabelStore
from labelops.worker.outbox import OutboxRelay, RelayError
from labelops.worker.pipeline import Pipeline

pytestmark = pytest.mark.integration

# A relay in its own process, so the test can SIGKILL it wherever it happens to be. Each
# message is delayed a little, so a batch takes long enough that the kills land in the
# middle of one: messages sent (some acknowledged), the transaction not yet committed.
RELAY_PROCESS = """
import os, threading, time
from psycopg_pool import ConnectionPool
from labelops.api.kafka_connection import connection_from_env
from labelops.api.worker_configmap import WorkerConfig
from labelops.worker.outbox import OutboxRelay, RelayError
from labelops.worker.pipeline import Pipeline

class SlowRelay(OutboxRelay):
    def _produce(self, *args):
        time.sleep(0.004)
        super()._produce(*args)

config = WorkerConfig.model_validate_json(os.environ["TEST_CAMPAIGN"])
pool = ConnectionPool(os.environ["TEST_DSN"], min_size=1, max_size=2)
pipeline = Pipeline(pool, config, connection_from_env(os.environ))
SlowRelay(pipeline, batch_size=40).run(threading.Event())
"""


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "outbox") as name:
        yield name


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn) as opened:
        yield opened


@pytest.fixture
def config(schema: str, kafka: KafkaConnection) -> WorkerConfig:
    items, labels = unique_name("items"), unique_name("labels")
    create_topics(kafka.bootstrap, items, labels)
    return make_config(schema, topics=(items, labels), max_leases=10)


def accept_labels(pool: ConnectionPool[Any], config: WorkerConfig, count: int) -> list[str]:
    """count labels through the real claim/submit path; returns their ids."""
    store = LabelStore(pool, config)
    add_items(pool, config.schema_, count)
    label_ids = []
    for n in range(count):
        labeler = f"labeler-{n % 7}"
        task = store.claim(labeler)
        assert task is not None
        label_ids.append(store.submit(labeler, task.item_id, {"choice": "helpful"}).label_id)
    return label_ids


def outbox_size(pool: ConnectionPool[Any], schema: str) -> int:
    return int(query(pool, schema, "SELECT count(*) FROM {schema}.outbox")[0][0])


def test_relayed_messages_carry_the_label_keyed_by_item(
    pool: ConnectionPool[Any], config: WorkerConfig, kafka: KafkaConnection
) -> None:
    [label_id] = accept_labels(pool, config, 1)
    relay = OutboxRelay(Pipeline(pool, config, kafka))
    assert relay.relay_once() == 1
    assert relay.relay_once() == 0
    assert outbox_size(pool, config.schema_) == 0

    [message] = read_topic(kafka.bootstrap, config.topics.labels, expect=1)
    value = json.loads(message.value())
    assert value["labelId"] == label_id
    assert message.key() == value["itemId"].encode()
    assert dict(message.headers()) == {"label-id": label_id.encode()}
    assert (value["labeler"], value["value"], value["ordinal"]) == (
        "labeler-0",
        {"choice": "helpful"},
        1,
    )


def test_labels_kafka_does_not_acknowledge_stay_in_the_outbox(
    pool: ConnectionPool[Any], config: WorkerConfig, kafka: KafkaConnection
) -> None:
    accept_labels(pool, config, 3)
    nowhere = config.model_copy(
        update={"topics": config.topics.model_copy(update={"labels": unique_name("missing")})}
    )
    relay = OutboxRelay(Pipeline(pool, nowhere, kafka), delivery_timeout=2)
    with pytest.raises(RelayError, match="3 of 3 labels were not acknowledged"):
        relay.relay_once()
    assert outbox_size(pool, config.schema_) == 3


def test_relays_of_several_replicas_share_the_outbox_without_duplicates(
    pool: ConnectionPool[Any], config: WorkerConfig, kafka: KafkaConnection
) -> None:
    label_ids = accept_labels(pool, config, 300)
    relays = [OutboxRelay(Pipeline(pool, config, kafka), batch_size=20) for _ in range(3)]
    stop = threading.Event()
    threads = [threading.Thread(target=relay.run, args=(stop,)) for relay in relays]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: outbox_size(pool, config.schema_) == 0, 60, "the outbox to drain")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    published = label_ids_on(read_topic(kafka.bootstrap, config.topics.labels, len(label_ids)))
    assert Counter(published) == Counter(label_ids), "each label exactly once, none lost"


def test_a_relay_killed_at_any_point_loses_no_label(
    postgres_dsn: str, pool: ConnectionPool[Any], config: WorkerConfig, kafka: KafkaConnection
) -> None:
    label_ids = accept_labels(pool, config, 600)
    env = {
        **os.environ,
        "TEST_CAMPAIGN": config.model_dump_json(by_alias=True),
        "TEST_DSN": postgres_dsn,
    }
    # Kill a relay right after it started, then three times while it is publishing.
    for shrink_by in (0, 1, 1, 1):
        target = outbox_size(pool, config.schema_) - shrink_by
        process = subprocess.Popen([sys.executable, "-c", RELAY_PROCESS], env=env)

        def committed_a_batch(target: int = target) -> bool:
            return outbox_size(pool, config.schema_) <= target

        try:
            wait_for(
                committed_a_batch,
                timeout=60,
                what="the relay to commit a batch",
            )
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
    remaining = outbox_size(pool, config.schema_)
    assert remaining > 0, "the relay finished before the test could kill it mid-way"

    # A fresh relay publishes what the killed ones left behind.
    relay = OutboxRelay(Pipeline(pool, config, kafka))
    while relay.relay_once():
        pass
    assert outbox_size(pool, config.schema_) == 0
    published = label_ids_on(read_topic(kafka.bootstrap, config.topics.labels, len(label_ids)))
    missing = set(label_ids) - set(published)
    assert not missing, f"{len(missing)} accepted labels never reached the topic"
