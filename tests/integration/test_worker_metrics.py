"""The worker's data path metrics against real Kafka and Postgres: ingest lag falls to 0 as the
consumer catches up, a bad item counts one dead letter on the items topic, and the outbox
backlog counts the labels the relay has not delivered yet, down to 0. And the campaign's
active leases on /metrics, over real HTTP, where KEDA's leases trigger reads them: every
replica reports the whole campaign's unexpired leases, fewer once labeled, released or
lapsed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from psycopg_pool import ConnectionPool
from test_store_support import (
    create_topics,
    make_config,
    migrated_schema,
    open_pool,
    unique_name,
    wait_for,
)
from worker_harness import (
    TOKENS,
    Campaign,
    LiveApi,
    WorkerProcess,
    campaign_config,
    live_api,
    pairwise_payload,
    provisioned,
)
from worker_harness import unique_name as campaign_name
from worker_harness import wait_for as wait_until

from devstack.kafka import client_connection
from labelops.api.campaign import Autoscaling
from labelops.api.kafka_connection import KafkaConnection
from labelops.api.naming import CampaignNames
from labelops.api.worker_configmap import WorkerConfig
from labelops.operator.autoscaling import leases_trigger
from labelops.store import LabelStore
from labelops.worker.config import ENV_PROCESSES
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


# Where KEDA's leases trigger reads, as the operator writes it: the path of its url, and the
# gauge its valueLocation names (the worker Service's host is replaced by each replica's).
LEASES_TRIGGER = leases_trigger(
    CampaignNames("test", "c"), Autoscaling.model_validate({"mode": "keda", "maxReplicas": 2})
)["metadata"]
METRICS_PATH = urlsplit(LEASES_TRIGGER["url"]).path
LEASES_GAUGE = LEASES_TRIGGER["valueLocation"]
LABELERS_GAUGE = "labelops_worker_active_labelers"


def campaign_gauges(api: LiveApi | WorkerProcess) -> tuple[float, float] | None:
    """(active leases, active labelers) as this replica's /metrics serves them; the whole
    exposition must parse, as KEDA's Prometheus-format reader parses all of it, and that
    reader (Go's expfmt.TextParser) refuses a family declared twice."""
    response = requests.get(f"{api.url}{METRICS_PATH}", timeout=10)
    assert response.status_code == 200, response.text
    declared = [line.split()[2] for line in response.text.splitlines() if line.startswith("# TYPE")]
    assert len(declared) == len(set(declared)), f"a family declared twice: {sorted(declared)}"
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    if LEASES_GAUGE not in samples:
        return None
    return samples[LEASES_GAUGE], samples[LABELERS_GAUGE]


def every_replica_reports(
    replicas: list[LiveApi] | list[WorkerProcess], expected: tuple[int, int]
) -> None:
    """Polled: a replica may serve a figure read up to CAMPAIGN_READ_SECONDS ago."""
    seen: dict[str, tuple[float, float] | None] = {}

    def reported() -> bool:
        seen.update({api.url: campaign_gauges(api) for api in replicas})
        return all(value == expected for value in seen.values())

    wait_until(reported, 30, lambda: f"expected (leases, labelers) {expected}, saw {seen}")


def claim(api: LiveApi | WorkerProcess, labeler: str) -> str:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKENS[labeler]}"
    response = session.post(f"{api.url}/v1/tasks/claim")
    assert response.status_code == 200, response.text
    item: str = response.json()["id"]
    return item


def task_url(api: LiveApi, item: str, action: str) -> str:
    return f"{api.url}/v1/tasks/{quote(item, safe='')}/{action}"


def reserved_lapsed_leases(campaign: Campaign) -> int:
    with campaign.pool.connection() as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE reserved AND expires_at <= now()").format(
                sql.Identifier(campaign.config.schema_, "leases")
            )
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def leasing_campaign(postgres_dsn: str, kafka_bootstrap: str) -> Iterator[Campaign]:
    config = campaign_config(campaign_name("leases"), {"type": "pairwise"}, items=20)
    with provisioned(postgres_dsn, kafka_bootstrap, config) as campaign:
        campaign.seed([(f"i{n}", pairwise_payload(n)) for n in range(8)])
        yield campaign


def test_every_replica_reports_the_campaigns_unexpired_leases(
    leasing_campaign: Campaign,
) -> None:
    campaign = leasing_campaign
    with live_api(campaign) as one, live_api(campaign) as two:
        replicas = [one, two]
        every_replica_reports(replicas, (0, 0))

        alice_first, _ = claim(one, "alice"), claim(two, "alice")
        bob_item = claim(two, "bob")
        # Claimed through either replica, counted by both: the gauge is the campaign's.
        every_replica_reports(replicas, (3, 2))

        labeled = one.session("alice").post(
            task_url(one, alice_first, "labels"), json={"value": {"preferred": "tie"}}
        )
        assert labeled.status_code == 201, labeled.text
        every_replica_reports(replicas, (2, 2))

        released = two.session("bob").post(task_url(two, bob_item, "release"))
        assert released.status_code == 200, released.text
        every_replica_reports(replicas, (1, 1))

        # Carol's lease, taken with a 1 s lease by the campaign's own claim function, lapses;
        # no claim reaps it, so its slot stays reserved, but nobody is working on it.
        quotas = campaign.config.quotas.model_copy(update={"lease_seconds": 1.0})
        short = LabelStore(campaign.pool, campaign.config.model_copy(update={"quotas": quotas}))
        assert short.claim("carol") is not None
        wait_until(lambda: reserved_lapsed_leases(campaign) == 1, 30, lambda: "carol's lapse")
        every_replica_reports(replicas, (1, 1))
        assert reserved_lapsed_leases(campaign) == 1, "a claim reaped carol's lease meanwhile"


def test_every_http_process_of_a_preforked_worker_serves_the_gauge(
    leasing_campaign: Campaign, tmp_path: Path
) -> None:
    """With several HTTP processes /metrics is assembled from the processes' files
    (prometheus_client's multiprocess mode); the campaign's gauges are no process's own, so
    whichever process answers reads them itself: never summed over processes, never absent."""
    env = {**leasing_campaign.worker_env(), ENV_PROCESSES: "2"}
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        for labeler in ("alice", "bob", "bob"):
            claim(worker, labeler)
        every_replica_reports([worker], (3, 2))
        # Each request on a connection of its own, so both processes answer some of them.
        seen = {campaign_gauges(worker) for _ in range(12)}
        assert seen == {(3, 2)}, f"{seen}\n{worker.log()}"
        assert worker.terminate() == 0, worker.log()
    finally:
        worker.kill()
