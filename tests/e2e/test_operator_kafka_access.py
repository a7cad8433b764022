"""The operator on a broker with ACLs: each campaign gets its own Kafka users, exactly their
ACLs and a Secret its worker pods load; deleting the campaign takes the access away under
either reclaim policy (Retain keeps data, not access)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from kubernetes import client
from test_operator_harness import (
    Operator,
    apply,
    campaign_documents,
    crd_namespace,
    delete_campaign,
    drop_campaign_data,
    get_object,
    running_operator,
    wait_campaign,
    wait_event,
    wait_ready,
)

from labelops.api.kafka_connection import KafkaConnection, connection_from_env
from labelops.api.naming import CampaignNames
from labelops.clients.kafka import KafkaAdmin
from labelops.operator.kafka_access import campaign_users, principal

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def namespace(kube_api: client.ApiClient, kafka: KafkaConnection) -> Iterator[str]:
    # The local stack's broker always authenticates: without SCRAM this fails, never skips.
    assert kafka.uses_scram, (
        "the stack's broker does not authenticate with SCRAM "
        f"({kafka.security_protocol}); restart it with `make stack-down stack-up`"
    )
    with crd_namespace(kube_api, "e2e-kafka-access") as name:
        yield name


@pytest.fixture(scope="module")
def operator(
    stack_env: dict[str, str], namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    with running_operator(tmp_path_factory.mktemp("operator"), stack_env, namespace) as op:
        yield op


def secret_connection(
    api: client.ApiClient, namespace: str, name: str, bootstrap: str
) -> KafkaConnection:
    secret = get_object(api, "v1", "Secret", namespace, name)
    assert secret is not None, f"Secret {namespace}/{name} was not written"
    env = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    return connection_from_env({**env, "LABELOPS_KAFKA_BOOTSTRAP": bootstrap})


def delivered(connection: KafkaConnection, topic: str) -> bool:
    outcome: list[bool] = []
    producer = Producer(connection.client_config({"message.timeout.ms": 10_000, "log_level": 0}))
    producer.produce(topic, b"{}", on_delivery=lambda err, _m: outcome.append(err is None))
    producer.flush(20)
    return outcome == [True]


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_a_campaign_gets_its_own_kafka_users_and_loses_them_when_deleted(
    kube_api: client.ApiClient,
    namespace: str,
    operator: Operator,
    kafka: KafkaConnection,
    kafka_bootstrap: str,
    postgres_dsn: str,
    policy: str,
) -> None:
    name = f"acl-{policy.lower()}"
    names = CampaignNames(namespace, name)
    admin = KafkaAdmin(kafka)
    worker, learner = campaign_users(names)
    try:
        apply(kube_api, campaign_documents(namespace, name, reclaimPolicy=policy))
        wait_ready(kube_api, namespace, name, operator=operator)

        for user in (worker, learner):
            connection = secret_connection(kube_api, namespace, user.secret, kafka.bootstrap)
            assert connection.username == user.name
            assert asyncio.run(admin.acls_of(principal(user.name))) == user.acls
        deployment = get_object(kube_api, "apps/v1", "Deployment", namespace, names.worker)
        assert deployment is not None
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert {"secretRef": {"name": names.kafka_secret}} in container["envFrom"]
        worker_kafka = secret_connection(kube_api, namespace, worker.secret, kafka.bootstrap)
        assert delivered(worker_kafka, names.labels_topic), "the worker's user writes labels"
        assert not delivered(worker_kafka, names.items_topic), "nor may it forge items"

        delete_campaign(kube_api, namespace, name)
        wait_campaign(kube_api, namespace, name, lambda o: o is None, "deleted", operator=operator)
        event = wait_event(
            kube_api, namespace, name, "Retained" if policy == "Retain" else "Reclaimed"
        )
        assert f"Kafka user {worker.name}" in event["message"], event["message"]
        assert asyncio.run(admin.existing_users([worker.name, learner.name])) == set()
        for user in (worker, learner):
            assert asyncio.run(admin.acls_of(principal(user.name))) == set()
        deadline = time.monotonic() + 20
        while delivered(worker_kafka, names.labels_topic):
            assert time.monotonic() < deadline, "the deleted campaign's user still writes"
    finally:
        if policy == "Retain":
            drop_campaign_data(
                kafka_bootstrap,
                postgres_dsn,
                names.schema,
                [names.items_topic, names.labels_topic, names.predictions_topic],
            )
