"""Spec changes that must converge, and the operator's guards, on the real API server.

Workers run as local processes from the Deployment the operator wrote (devstack.podrunner),
against the stack's real Kafka and PostgreSQL; a rollout is played by stopping the local pods
and starting them again from the live Deployment, as Kubernetes would replace them.

  - pause: claims get 409 naming spec.paused, a held lease can still be submitted, ingest
    and the relay go on, the Deployment keeps its replicas; resume leases again;
  - target.items: once that many items are complete claims get 204 although items are open;
  - a Completed campaign whose target.labelsPerItem or target.items is raised reopens (the
    workers come back) and completes again;
  - confused deputy and connection budget: a disallowed image, a tokens Secret not labeled
    for the campaign, and a connectionLimit too small for the replicas are Stalled with the
    field named, and nothing is rolled out until they are fixed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from confluent_kafka import Consumer, Producer
from kubernetes import client
from test_operator_harness import (
    Campaign,
    Operator,
    apply,
    condition,
    get_object,
    install_crd,
    is_ready,
    module_operator,
    new_namespace,
    patch_spec,
    poll,
    wait_campaign,
    wait_ready,
)

from devstack import podrunner
from devstack.kafka import client_connection
from labelops.api.naming import CampaignNames
from labelops.store.progress import ProgressCounts, read_progress

pytestmark = pytest.mark.e2e

TOKENS = {"alice": "tok-alice-7a1c", "bob": "tok-bob-93e0", "carol": "tok-carol-51d2"}


def documents(
    namespace: str, name: str, changes: dict[str, Any] | None = None, opt_in: bool = True
) -> list[Any]:
    """A plain pairwise campaign (no gold, no model) and its tokens Secret."""
    labels = {"labelops.dev/campaign": name} if opt_in else {}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{name}-labelers", "namespace": namespace, "labels": labels},
        "type": "Opaque",
        "stringData": TOKENS,
    }
    campaign_spec: dict[str, Any] = {
        "task": {"type": "pairwise", "instructions": "Pick the more helpful response."},
        "target": {"items": 2, "labelsPerItem": 1},
        "workers": {"replicas": 1},
        "kafka": {"partitions": 1, "replicationFactor": 1, "retention": "1d"},
        "quotas": {"leaseSeconds": 600, "maxLeasesPerLabeler": 5},
        "labelers": {"tokenSecretRef": {"name": f"{name}-labelers"}},
        "reclaimPolicy": "Delete",
    }
    for dotted, value in (changes or {}).items():
        node = campaign_spec
        *path, last = dotted.split(".")
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    campaign = {
        "apiVersion": "labelops.dev/v1alpha1",
        "kind": "LabelingCampaign",
        "metadata": {"name": name, "namespace": namespace},
        "spec": campaign_spec,
    }
    return [secret, campaign]


@pytest.fixture(scope="module")
def namespace(kube_api: client.ApiClient) -> str:
    install_crd(kube_api)
    return new_namespace(kube_api, "e2e-converge")


@pytest.fixture(scope="module")
def operator(
    kube_api: client.ApiClient,
    stack_env: dict[str, str],
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    state = tmp_path_factory.mktemp("operator")
    with module_operator(kube_api, stack_env, namespace, state, drop_data=False) as op:
        yield op


# --- helpers ------------------------------------------------------------------------------


def produce_items(bootstrap: str, topic: str, ids: list[str]) -> None:
    producer = Producer(client_connection(bootstrap).client_config({"acks": "all"}))
    for item in ids:
        payload = {
            "prompt": f"Why is the sky blue? ({item})",
            "responses": [{"id": "a", "text": "Rayleigh scattering."}, {"id": "b", "text": "?"}],
        }
        producer.produce(
            topic, key=item.encode(), value=json.dumps({"id": item, "payload": payload})
        )
    assert producer.flush(30) == 0


def counts(postgres_dsn: str, namespace: str, name: str) -> ProgressCounts:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        return read_progress(conn, CampaignNames(namespace, name).schema)


class Workers:
    """The worker Deployment's pods as local processes; restart() plays a rollout."""

    def __init__(self, kube_api: client.ApiClient, namespace: str, name: str, state: Path):
        self.api, self.namespace, self.state = kube_api, namespace, state
        self.deployment = CampaignNames(namespace, name).worker
        self.pods: list[podrunner.LocalPod] = []

    def start(self) -> None:
        self.pods = podrunner.start_pods(self.api, self.namespace, self.deployment, self.state)
        for pod in self.pods:
            pod.wait_ready()

    def stop(self) -> None:
        podrunner.stop_pods(self.pods, self.state)
        self.pods = []

    def restart(self) -> None:
        self.stop()
        self.start()

    def post(self, labeler: str, path: str, body: Any = None) -> requests.Response:
        assert self.pods, "no worker running"
        return requests.post(
            f"{self.pods[0].url}{path}",
            headers={"Authorization": f"Bearer {TOKENS[labeler]}"},
            json=body,
            timeout=10,
        )

    def claim(self, labeler: str) -> requests.Response:
        return self.post(labeler, "/v1/tasks/claim")

    def label(self, labeler: str, item: str) -> requests.Response:
        return self.post(labeler, f"/v1/tasks/{item}/labels", {"value": {"preferred": "a"}})

    def claim_and_label(self, labeler: str) -> str:
        claimed = self.claim(labeler)
        assert claimed.status_code == 200, (claimed.status_code, claimed.text)
        item = str(claimed.json()["id"])
        submitted = self.label(labeler, item)
        assert submitted.status_code == 201, (submitted.status_code, submitted.text)
        return item


@pytest.fixture
def workers(
    kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> Iterator[Callable[[str], Workers]]:
    made: list[Workers] = []

    def make(name: str) -> Workers:
        made.append(Workers(kube_api, namespace, name, tmp_path))
        return made[-1]

    yield make
    for w in made:
        w.stop()


def replicas(kube_api: client.ApiClient, namespace: str, name: str) -> int | None:
    deployment = get_object(
        kube_api, "apps/v1", "Deployment", namespace, CampaignNames(namespace, name).worker
    )
    return None if deployment is None else int(deployment["spec"]["replicas"])


def phase(obj: Campaign | None) -> str | None:
    return ((obj or {}).get("status") or {}).get("phase")


def label_on_topic(bootstrap: str, topic: str, label_id: str, timeout: float = 60) -> bool:
    consumer = Consumer(
        client_connection(bootstrap).client_config(
            {
                "group.id": f"e2e-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() or message.value() is None:
                continue
            if json.loads(message.value() or b"{}").get("labelId") == label_id:
                return True
        return False
    finally:
        consumer.close()


# --- pause ----------------------------------------------------------------------------------


def test_pause_refuses_claims_but_keeps_ingest_relay_and_held_leases(
    kube_api: client.ApiClient,
    namespace: str,
    operator: Operator,
    kafka_bootstrap: str,
    postgres_dsn: str,
    workers: Callable[[str], Workers],
) -> None:
    name = "pausing"
    names = CampaignNames(namespace, name)
    apply(kube_api, documents(namespace, name, {"target.items": 10}))
    wait_ready(kube_api, namespace, name, operator=operator)
    pods = workers(name)
    pods.start()
    produce_items(kafka_bootstrap, names.items_topic, ["p-1", "p-2"])
    poll(lambda: counts(postgres_dsn, namespace, name).items_total == 2, "2 items ingested")
    held = pods.claim("alice")
    assert held.status_code == 200, held.text
    held_item = held.json()["id"]

    patch_spec(kube_api, namespace, name, {"paused": True})
    paused = wait_campaign(
        kube_api,
        namespace,
        name,
        lambda o: is_ready(o) and phase(o) == "Paused",
        "Ready and Paused",
        operator=operator,
    )
    assert condition(paused, "WorkersReady")["reason"] == "Available"
    assert replicas(kube_api, namespace, name) == 1, "pause keeps the workers"
    pods.restart()  # the rollout of the paused config

    refused = pods.claim("bob")
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert problem["type"].endswith("campaign-paused")
    assert "spec.paused" in problem["detail"]

    # A lease taken before the pause is still honoured, and its label reaches the topic.
    submitted = pods.label("alice", held_item)
    assert submitted.status_code == 201, submitted.text
    assert label_on_topic(kafka_bootstrap, names.labels_topic, submitted.json()["labelId"])
    # Ingest goes on: items do not sit in Kafka (and expire) while paused.
    produce_items(kafka_bootstrap, names.items_topic, ["p-3"])
    poll(lambda: counts(postgres_dsn, namespace, name).items_total == 3, "ingested while paused")

    patch_spec(kube_api, namespace, name, {"paused": False})
    resumed = wait_ready(kube_api, namespace, name, operator=operator)
    assert phase(resumed) == "Running"
    pods.restart()
    assert pods.claim("bob").status_code == 200


# --- target.items and reopening a Completed campaign ----------------------------------------


def test_completed_campaign_reopens_when_the_target_grows_and_completes_again(
    kube_api: client.ApiClient,
    namespace: str,
    operator: Operator,
    kafka_bootstrap: str,
    postgres_dsn: str,
    workers: Callable[[str], Workers],
) -> None:
    name = "growing"
    names = CampaignNames(namespace, name)
    apply(kube_api, documents(namespace, name))  # 2 items, 1 label each
    wait_ready(kube_api, namespace, name, operator=operator)
    pods = workers(name)
    pods.start()
    produce_items(kafka_bootstrap, names.items_topic, ["g-1", "g-2", "g-3"])
    poll(lambda: counts(postgres_dsn, namespace, name).items_total == 3, "3 items ingested")

    assert pods.claim_and_label("alice") == "g-1"
    assert pods.claim_and_label("alice") == "g-2"
    assert counts(postgres_dsn, namespace, name).items_completed == 2

    # target.items items are complete: no new lease (once the worker's cached read of the
    # counters, at most a second old, sees it), although g-3 is open. carol probes; a lease
    # the stale read still gave her goes back.
    def refused() -> bool:
        answer = pods.claim("carol")
        if answer.status_code == 200:
            pods.post("carol", f"/v1/tasks/{answer.json()['id']}/release")
        return answer.status_code == 204

    poll(refused, "claims stopping at target.items", 10)

    def completed(o: Campaign | None) -> bool:
        return is_ready(o) and phase(o) == "Completed"

    wait_campaign(kube_api, namespace, name, completed, "Completed", operator=operator)
    assert replicas(kube_api, namespace, name) == 0
    pods.stop()  # scaled to 0

    # More labels per item: the operator reopens the completed items, workers come back.
    patch_spec(kube_api, namespace, name, {"target": {"labelsPerItem": 2}})
    reopened = wait_campaign(
        kube_api,
        namespace,
        name,
        lambda o: is_ready(o) and phase(o) == "Running",
        "Running again after labelsPerItem grew",
        operator=operator,
    )
    assert condition(reopened, "TargetMet")["status"] == "False"
    assert replicas(kube_api, namespace, name) == 1
    assert counts(postgres_dsn, namespace, name).items_completed == 0
    pods.start()
    done = {pods.claim_and_label("bob"), pods.claim_and_label("bob")}
    assert len(done) == 2
    wait_campaign(kube_api, namespace, name, completed, "Completed again", operator=operator)
    assert replicas(kube_api, namespace, name) == 0
    pods.stop()

    # More items: reopens too, and the third item gets its two labels.
    patch_spec(kube_api, namespace, name, {"target": {"items": 3}})
    wait_campaign(
        kube_api,
        namespace,
        name,
        lambda o: is_ready(o) and phase(o) == "Running",
        "Running again after target.items grew",
        operator=operator,
    )
    assert replicas(kube_api, namespace, name) == 1
    pods.start()
    assert pods.claim_and_label("alice") == "g-3"
    assert pods.claim_and_label("bob") == "g-3"
    final = wait_campaign(
        kube_api, namespace, name, completed, "Completed at 3 items", operator=operator
    )
    assert final is not None and final["status"]["progress"]["itemsCompleted"] == 3


# --- guards -------------------------------------------------------------------------------


def stalled(reason: str) -> Callable[[Campaign | None], bool]:
    def check(o: Campaign | None) -> bool:
        return condition(o, "Stalled").get("status") == "True" and (
            condition(o, "Stalled").get("reason") == reason
        )

    return check


def test_a_disallowed_worker_image_is_stalled_and_never_rolled_out(
    kube_api: client.ApiClient, namespace: str, operator: Operator
) -> None:
    name = "foreign-image"
    apply(kube_api, documents(namespace, name, {"workers.image": "evil.example/miner:1"}))
    found = wait_campaign(
        kube_api, namespace, name, stalled("ImageNotAllowed"), "Stalled", operator=operator
    )
    message = condition(found, "Stalled")["message"]
    assert "spec.workers.image 'evil.example/miner:1'" in message
    assert "'labelops'" in message, "the operator's own repository is what is allowed"
    assert replicas(kube_api, namespace, name) is None, "no Deployment for a foreign image"
    patch_spec(kube_api, namespace, name, {"workers": {"image": "labelops:0.1.0"}})
    wait_ready(kube_api, namespace, name, operator=operator)


def test_a_tokens_secret_not_labeled_for_the_campaign_is_stalled(
    kube_api: client.ApiClient, namespace: str, operator: Operator
) -> None:
    name = "borrowed-secret"
    apply(kube_api, documents(namespace, name, opt_in=False))
    found = wait_campaign(
        kube_api, namespace, name, stalled("TokenSecretNotOptedIn"), "Stalled", operator=operator
    )
    message = condition(found, "Stalled")["message"]
    assert message.startswith("spec.labelers.tokenSecretRef:")
    assert f"labelops.dev/campaign={name}" in message
    assert replicas(kube_api, namespace, name) is None, "the Secret was never mounted"
    # Opting the Secret in is enough: the operator looks again (slowly) by itself.
    apply(kube_api, documents(namespace, name)[:1])
    wait_ready(kube_api, namespace, name, timeout=120, operator=operator)


def test_a_connection_limit_too_small_for_the_replicas_is_stalled_with_the_arithmetic(
    kube_api: client.ApiClient, namespace: str, operator: Operator
) -> None:
    name = "crowded"
    apply(kube_api, documents(namespace, name, {"workers.replicas": 3}))
    found = wait_campaign(
        kube_api, namespace, name, stalled("ConnectionLimitTooSmall"), "Stalled", operator=operator
    )
    message = condition(found, "Stalled")["message"]
    assert "spec.quotas.postgres.connectionLimit 20" in message
    assert "spec.workers.replicas 3" in message
    assert "= 28 > 20" in message
    patch_spec(kube_api, namespace, name, {"quotas": {"postgres": {"connectionLimit": 28}}})
    wait_ready(kube_api, namespace, name, operator=operator)
    assert replicas(kube_api, namespace, name) == 3
