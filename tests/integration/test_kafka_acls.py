"""Tenant isolation on the real broker (SASL/SCRAM, StandardAuthorizer, no ACL means no access).

Two campaigns, each with the users and ACLs the operator gives it (kafka_access.py, applied
with the operator's KafkaAdmin): each user does what its process does on its own campaign's
topics and nothing on the other's; a client without credentials gets nothing at all; once
the campaign's access is removed its credentials open nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from test_store_support import make_config, migrated_schema, open_pool, query

from labelops.api.kafka_connection import KafkaConnection
from labelops.api.naming import CampaignNames
from labelops.clients.kafka import KafkaAdmin
from labelops.learner.kafka_io import PredictionPublisher, TopicReader
from labelops.learner.training import Prediction
from labelops.operator.kafka_access import SCRAM_ITERATIONS, CampaignUser, campaign_users, principal
from labelops.store import LabelStore
from labelops.worker.ingest import Ingestor
from labelops.worker.outbox import OutboxRelay
from labelops.worker.pipeline import Pipeline

pytestmark = pytest.mark.integration

QUIET = {"log_level": 0}
DENIED = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
}


@dataclass
class Tenant:
    names: CampaignNames
    worker: KafkaConnection
    learner: KafkaConnection
    users: tuple[CampaignUser, CampaignUser]


def _scram_admin(kafka: KafkaConnection) -> KafkaAdmin:
    # The local stack's broker always authenticates: one that does not is a failure here,
    # never a skip (a stack started by an older checkout needs `make stack-down stack-up`).
    assert kafka.uses_scram, (
        "the stack's broker does not authenticate (LABELOPS_KAFKA_SECURITY_PROTOCOL is "
        f"{kafka.security_protocol}); restart it with `make stack-down stack-up`"
    )
    return KafkaAdmin(kafka)


def _provision(admin: KafkaAdmin, kafka: KafkaConnection) -> Tenant:
    names = CampaignNames("acl-test", f"c{uuid.uuid4().hex[:8]}")
    client = AdminClient(kafka.client_config(QUIET))
    for future in client.create_topics(
        [NewTopic(t, num_partitions=1, replication_factor=1) for t in names.topics().values()]
    ).values():
        future.result(30)
    users = campaign_users(names)
    passwords = {user.name: uuid.uuid4().hex for user in users}
    mechanism = kafka.sasl_mechanism or "SCRAM-SHA-512"
    asyncio.run(admin.set_passwords(passwords, mechanism, SCRAM_ITERATIONS))
    for user in users:
        asyncio.run(admin.create_acls(sorted(user.acls, key=str)))
    worker, learner = users
    return Tenant(
        names,
        kafka.as_user(worker.name, passwords[worker.name]),
        kafka.as_user(learner.name, passwords[learner.name]),
        users,
    )


def _remove(admin: KafkaAdmin, tenant: Tenant, mechanism: str) -> None:
    asyncio.run(admin.delete_acls_of([principal(user.name) for user in tenant.users]))
    asyncio.run(admin.delete_users([user.name for user in tenant.users], mechanism))


@pytest.fixture
def tenants(kafka: KafkaConnection) -> Iterator[tuple[Tenant, Tenant]]:
    admin = _scram_admin(kafka)
    a, b = _provision(admin, kafka), _provision(admin, kafka)
    yield a, b
    for tenant in (a, b):
        _remove(admin, tenant, kafka.sasl_mechanism or "SCRAM-SHA-512")
        AdminClient(kafka.client_config(QUIET)).delete_topics(list(tenant.names.topics().values()))


def produce(connection: KafkaConnection, topic: str) -> int | None:
    """Produce one message; None when acknowledged, else the error code of its delivery."""
    outcome: list[int | None] = []
    producer = Producer(connection.client_config({"message.timeout.ms": 10_000, **QUIET}))
    producer.produce(
        topic,
        b"forged",
        on_delivery=lambda err, _m: outcome.append(None if err is None else int(err.code())),
    )
    producer.flush(20)
    assert outcome, f"no delivery report for {topic} within 20 s"
    return outcome[0]


def consume(connection: KafkaConnection, topic: str, group: str) -> int | None:
    """Read topic as group: None once a message arrives, else the first error code."""
    consumer = Consumer(
        connection.client_config({"group.id": group, "auto.offset.reset": "earliest", **QUIET})
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is None:
                return None
            if error.code() in DENIED or error.fatal():
                return int(error.code())
        raise AssertionError(f"neither a message nor an error from {topic} within 30 s")
    finally:
        consumer.close()


def wait_acknowledged(connection: KafkaConnection, topic: str) -> None:
    """ACLs reach the authorizer through the metadata log: allow them a moment."""
    deadline = time.monotonic() + 20
    while (code := produce(connection, topic)) is not None:
        assert code in DENIED and time.monotonic() < deadline, f"{topic}: error {code}"


def test_a_campaigns_users_do_their_own_jobs_and_nothing_on_another_campaign(
    tenants: tuple[Tenant, Tenant], kafka: KafkaConnection
) -> None:
    a, b = tenants
    # What the processes do: the learner writes predictions, the worker writes labels, and
    # items come from the campaign's owner (here the admin).
    wait_acknowledged(a.worker, a.names.labels_topic)
    wait_acknowledged(a.learner, a.names.predictions_topic)
    for topic in (a.names.items_topic, b.names.items_topic, b.names.labels_topic):
        assert produce(kafka, topic) is None
    assert consume(a.worker, a.names.items_topic, a.names.consumer_group) is None
    assert consume(a.worker, a.names.predictions_topic, a.names.consumer_group) is None
    assert consume(a.learner, a.names.items_topic, a.names.learner_group) is None
    assert consume(a.learner, a.names.labels_topic, a.names.learner_group) is None

    denied_topic, denied_group = (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    )
    # Forging: no items for its own campaign, no labels from the learner, nothing for B.
    assert produce(a.worker, a.names.items_topic) == denied_topic
    assert produce(a.learner, a.names.labels_topic) == denied_topic
    assert produce(a.learner, a.names.items_topic) == denied_topic
    for connection in (a.worker, a.learner):
        for topic in b.names.topics().values():
            assert produce(connection, topic) == denied_topic, topic
    # Reading: B's topics with B's group or its own; its own topics with another's group.
    assert consume(a.worker, b.names.items_topic, a.names.consumer_group) == denied_topic
    assert consume(a.worker, b.names.items_topic, b.names.consumer_group) == denied_group
    assert consume(a.learner, b.names.labels_topic, a.names.learner_group) == denied_topic
    assert consume(a.worker, a.names.labels_topic, a.names.consumer_group) == denied_topic
    assert consume(a.worker, a.names.items_topic, b.names.consumer_group) == denied_group


def test_without_credentials_or_with_wrong_ones_nothing_is_reachable(
    tenants: tuple[Tenant, Tenant], kafka: KafkaConnection
) -> None:
    a, _ = tenants
    for stranger in (
        KafkaConnection(kafka.bootstrap),  # PLAINTEXT to the SASL listener
        a.worker.as_user(a.worker.username or "", "not-the-password"),
        a.worker.as_user("nobody", "nothing"),
    ):
        client = AdminClient(stranger.client_config({"socket.timeout.ms": 3000, **QUIET}))
        with pytest.raises(Exception) as caught:
            client.list_topics(timeout=5)
        assert "Broker transport failure" in str(caught.value) or "Authentication" in str(
            caught.value
        ), caught.value
        assert produce(stranger, a.names.labels_topic) is not None


def test_once_removed_the_campaigns_credentials_open_nothing(
    tenants: tuple[Tenant, Tenant], kafka: KafkaConnection
) -> None:
    a, _ = tenants
    wait_acknowledged(a.worker, a.names.labels_topic)
    _remove(KafkaAdmin(kafka), a, kafka.sasl_mechanism or "SCRAM-SHA-512")
    deadline = time.monotonic() + 20
    while produce(a.worker, a.names.labels_topic) is None:
        assert time.monotonic() < deadline, "the removed worker user still writes labels"
    assert asyncio.run(KafkaAdmin(kafka).acls_of(principal(a.worker.username or ""))) == set()


def test_the_worker_and_learner_work_with_their_own_users(
    tenants: tuple[Tenant, Tenant], kafka: KafkaConnection, postgres_dsn: str
) -> None:
    a, _ = tenants
    wait_acknowledged(a.worker, a.names.labels_topic)
    producer = Producer(kafka.client_config(QUIET))
    for n in range(5):
        item = {"id": f"i{n}", "payload": {"text": f"item {n}"}}
        producer.produce(a.names.items_topic, key=f"i{n}".encode(), value=json.dumps(item))
    assert producer.flush(30) == 0
    with migrated_schema(postgres_dsn, "acl") as schema, open_pool(postgres_dsn) as pool:
        config = make_config(
            schema,
            topics=(a.names.items_topic, a.names.labels_topic),
            consumer_group=a.names.consumer_group,
        )
        ingestor = Ingestor(Pipeline(pool, config, a.worker))
        try:
            handled, deadline = 0, time.monotonic() + 60
            while handled < 5 and time.monotonic() < deadline:
                handled += ingestor.poll_once(timeout=1.0)
        finally:
            ingestor.close()
        assert query(pool, schema, "SELECT count(*) FROM {schema}.items")[0][0] == 5
        store = LabelStore(pool, config)
        task = store.claim("labeler-1")
        assert task is not None
        store.submit("labeler-1", task.item_id, {"choice": "helpful"})
        assert OutboxRelay(Pipeline(pool, config, a.worker)).relay_once() == 1

    reader = TopicReader(a.learner.client_config(), [a.names.labels_topic], a.names.learner_client)
    try:
        reader.assign_new_partitions()
        read: list[Any] = []
        deadline = time.monotonic() + 30
        while not reader.caught_up and time.monotonic() < deadline:
            read += reader.poll(100, 0.5)
        assert task.item_id.encode() in {m.key() for m in read}, "the relayed label"
    finally:
        reader.close()
    publisher = PredictionPublisher(
        a.learner.client_config(), a.names.predictions_topic, a.names.learner_client
    )
    assert publisher.publish("v1", [Prediction(task.item_id, {"choice": "helpful"}, 0.9)]) == 1
