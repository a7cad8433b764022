"""Models in the loop and data quality, from the operator's side, on the real stack.

The SMS spam campaign with a model (examples/sms-spam-classification-with-model.yaml): the
operator reconciles the predictions topic and the built-in learner's Deployment; the
learner and a worker run as local processes from exactly what the operator wrote (pods are
simulated); the learner's predictions reach the schema through the worker and the model
version shows in status.model. A second campaign gets its model and quality figures written
into its schema the way the worker's quality job writes them, to see ModelTrusted, the brake
Event, the blocked-labeler Event, status.quality and the metrics follow.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from confluent_kafka import Producer
from kubernetes import client
from psycopg import sql
from test_operator_harness import (
    REPO,
    Campaign,
    Operator,
    apply,
    condition,
    get_object,
    install_crd,
    module_operator,
    new_namespace,
    patch_spec,
    poll,
    topic_state,
    wait_campaign,
    wait_event,
    wait_ready,
)

from devstack import kubeapply, podrunner
from devstack.datasets import datasets_dir
from devstack.kafka import client_connection
from devstack.procs import free_port
from labelops.api.campaign import CampaignSpec
from labelops.api.naming import CampaignNames
from labelops.store.progress import CounterDelta, bump_counters

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples" / "sms-spam-classification-with-model.yaml"
SMS = datasets_dir() / "sms_spam" / "texts.csv"
NAME = "sms-spam-with-model"
ITEMS = 60
HUMAN_LABELS = 30


def documents(namespace: str, name: str = NAME, **spec: Any) -> list[dict[str, Any]]:
    docs = kubeapply.load_documents(EXAMPLE)
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        if doc["kind"] == "Secret":
            doc["metadata"]["name"] = f"{name}-labelers"
            doc["metadata"].setdefault("labels", {})["labelops.dev/campaign"] = name
        else:
            doc["metadata"]["name"] = name
            doc["spec"]["labelers"]["tokenSecretRef"]["name"] = f"{name}-labelers"
            doc["spec"]["target"]["items"] = ITEMS
            doc["spec"]["model"]["learner"].update(retrainLabels=10, retrainSeconds=5)
            doc["spec"].update(spec)
    return docs


@pytest.fixture(scope="module")
def namespace(kube_api: client.ApiClient) -> str:
    install_crd(kube_api)
    return new_namespace(kube_api, "e2e-models")


@pytest.fixture(scope="module")
def operator(
    kube_api: client.ApiClient,
    stack_env: dict[str, str],
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    state = tmp_path_factory.mktemp("operator")
    with module_operator(kube_api, stack_env, namespace, state, drop_data=True) as op:
        yield op


@pytest.fixture(scope="module")
def campaign(kube_api: client.ApiClient, namespace: str, operator: Operator) -> Campaign:
    apply(kube_api, documents(namespace))
    return wait_ready(kube_api, namespace, NAME, operator=operator)


def learner(kube_api: client.ApiClient, namespace: str, name: str = NAME) -> dict[str, Any] | None:
    return get_object(kube_api, "apps/v1", "Deployment", namespace, f"{name}-learner")


def test_predictions_topic_and_learner_deployment_are_reconciled(
    campaign: Campaign, kube_api: client.ApiClient, namespace: str, kafka_bootstrap: str
) -> None:
    names = CampaignNames(namespace, NAME)
    assert campaign["status"]["topics"]["predictions"] == names.predictions_topic
    state = topic_state(kafka_bootstrap, names.predictions_topic)
    assert state is not None, "the predictions topic exists in Kafka"
    assert state[0] == CampaignSpec.model_validate(campaign["spec"]).kafka.partitions

    deployment = learner(kube_api, namespace)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 1
    [owner] = deployment["metadata"]["ownerReferences"]
    assert owner["uid"] == campaign["metadata"]["uid"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["labelops", "learner"]
    assert pod["automountServiceAccountToken"] is False
    # Kafka only: nothing from the database Secret or the labelers' tokens.
    assert all("valueFrom" not in e for e in container["env"])
    assert [s["secretRef"]["name"] for s in container["envFrom"]] == [f"{NAME}-learner-kafka"]

    # ModelTrusted exists (the campaign auto-accepts), False until a version is proven.
    trusted = wait_campaign(
        kube_api,
        namespace,
        NAME,
        lambda o: condition(o, "ModelTrusted").get("reason") == "NoModelVersion",
        "ModelTrusted=False (NoModelVersion)",
    )
    assert condition(trusted, "ModelTrusted")["status"] == "False"
    assert condition(trusted, "Ready")["status"] == "True", "trust is not readiness"


def sms_rows(n: int) -> list[dict[str, str]]:
    seen: set[str] = set()
    rows: list[dict[str, str]] = []
    with SMS.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["text"] not in seen:
                seen.add(row["text"])
                rows.append(row)
            if len(rows) == n:
                break
    return rows


def human_label(namespace: str, row: dict[str, str]) -> dict[str, Any]:
    """A label as the worker's outbox relays it (labelops.store label_message)."""
    return {
        "labelId": str(uuid.uuid4()),
        "campaign": {"namespace": namespace, "name": NAME},
        "itemId": row["id"],
        "labeler": "alice",
        "origin": "human",
        "value": {"choice": row["label"]},
        "ordinal": 1,
        "labelsPerItem": 1,
        "createdAt": "2026-12-01T00:00:00Z",
    }


def produce(bootstrap: str, topic: str, messages: list[tuple[str, dict[str, Any]]]) -> None:
    producer = Producer(client_connection(bootstrap).client_config({"acks": "all"}))
    for key, value in messages:
        producer.produce(topic, key=key.encode(), value=json.dumps(value).encode())
    assert producer.flush(30) == 0


def test_the_learner_runs_from_what_the_operator_wrote_and_its_version_reaches_status(
    campaign: Campaign,
    kube_api: client.ApiClient,
    namespace: str,
    kafka_bootstrap: str,
    operator: Operator,
    tmp_path: Path,
) -> None:
    names = CampaignNames(namespace, NAME)
    rows = sms_rows(ITEMS)
    workers = podrunner.start_pods(kube_api, namespace, names.worker, tmp_path, replicas=1)
    port = free_port()
    learners = podrunner.start_pods(
        kube_api,
        namespace,
        f"{NAME}-learner",
        tmp_path,
        extra_env={"LABELOPS_LEARNER_PORT": str(port), "LABELOPS_LEARNER_HOST": "127.0.0.1"},
    )
    assert len(learners) == 1

    def learner_state() -> dict[str, Any]:
        try:
            reply = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
        except requests.ConnectionError:
            return {}
        body: dict[str, Any] = reply.json()
        return body

    def logs() -> str:
        return "\n".join(
            (tmp_path / f"{p.name}.log").read_text(errors="replace")[-3000:]
            for p in (*workers, *learners)
            if (tmp_path / f"{p.name}.log").exists()
        )

    try:
        for worker in workers:
            worker.wait_ready()
        produce(
            kafka_bootstrap,
            names.items_topic,
            [(r["id"], {"id": r["id"], "payload": {"text": r["text"]}}) for r in rows],
        )
        labeled = rows[:HUMAN_LABELS]
        produce(
            kafka_bootstrap,
            names.labels_topic,
            [(r["id"], human_label(namespace, r)) for r in labeled],
        )
        # The learner trains on the human labels and publishes; the worker ingests the
        # predictions; the operator shows the version the learner reports.
        poll(
            lambda: learner_state().get("version") is not None,
            "a trained learner",
            180,
            lambda: f"learner /readyz: {learner_state()}\n{logs()}",
        )
        shown = wait_campaign(
            kube_api,
            namespace,
            NAME,
            lambda o: bool(((o or {}).get("status") or {}).get("model", {}).get("version")),
            "showing the learner's model version",
            timeout=120,
            operator=operator,
        )
        assert shown is not None
        model = shown["status"]["model"]
        published = learner_state()["version"]
        assert model["version"] <= published, (model, published)
        assert model["trusted"] is False and model.get("threshold") is None
        assert condition(shown, "ModelTrusted")["reason"] in ("Calibrating", "NoModelVersion")
        progress = shown["status"].get("progress") or {}
        assert progress.get("itemsTotal", 0) <= ITEMS
    finally:
        podrunner.stop_pods(learners, tmp_path)
        podrunner.stop_pods(workers, tmp_path)


def test_learner_scales_to_zero_when_paused_and_goes_when_removed(
    campaign: Campaign, kube_api: client.ApiClient, namespace: str, operator: Operator
) -> None:
    def replicas(expected: int) -> Callable[[Campaign | None], bool]:
        def check(_: Campaign | None) -> bool:
            deployment = learner(kube_api, namespace)
            return deployment is not None and deployment["spec"]["replicas"] == expected

        return check

    patch_spec(kube_api, namespace, NAME, {"paused": True})
    wait_campaign(kube_api, namespace, NAME, replicas(0), "learner at 0", operator=operator)
    patch_spec(kube_api, namespace, NAME, {"paused": False})
    wait_campaign(kube_api, namespace, NAME, replicas(1), "learner back", operator=operator)

    patch_spec(kube_api, namespace, NAME, {"model": {"learner": None}})
    wait_campaign(
        kube_api,
        namespace,
        NAME,
        lambda _: learner(kube_api, namespace) is None,
        "learner Deployment deleted",
        operator=operator,
    )
    wait_ready(kube_api, namespace, NAME, operator=operator)


# --- figures written as the worker's quality job writes them ----------------------------

SYNTHETIC = "models-figures"


def execute(dsn: str, statement: sql.Composed) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)


def test_status_conditions_events_and_metrics_follow_the_quality_jobs_figures(
    kube_api: client.ApiClient, namespace: str, operator: Operator, postgres_dsn: str
) -> None:
    apply(
        kube_api,
        documents(
            namespace,
            SYNTHETIC,
            quality={"minAgreement": 0.6, "gold": {"minAnswers": 10, "minAccuracy": 0.8}},
        ),
    )
    wait_ready(kube_api, namespace, SYNTHETIC, operator=operator)
    schema = CampaignNames(namespace, SYNTHETIC).schema
    table = lambda name: sql.Identifier(schema, name)  # noqa: E731

    with psycopg.connect(postgres_dsn, autocommit=True) as conn, conn.cursor() as cur:
        bump_counters(
            cur,
            schema,
            CounterDelta(
                items_total=40,
                items_completed=20,
                labels=25,
                human_labeled=15,
                machine_labeled=10,
                scored_by_people=8,
                disputed=2,
                gold_answers=30,
            ),
        )
    execute(
        postgres_dsn,
        sql.SQL(
            "INSERT INTO {} (version, threshold, trusted, audits, audits_correct, lower_bound,"
            " message) VALUES ('e2e-v1', 0.91, true, 70, 70, 0.958, 'proven at 0.91')"
        ).format(table("model_versions")),
    )
    execute(
        postgres_dsn,
        sql.SQL(
            "UPDATE {} SET alpha = 0.41, alpha_level = 'nominal', gold_answers = 30,"
            " gold_correct = 24, labelers_blocked = 1"
        ).format(table("quality_summary")),
    )
    execute(
        postgres_dsn,
        sql.SQL(
            "INSERT INTO {} (labeler, blocked_at, blocked_reason) VALUES"
            " ('mallory', now(), 'gold accuracy 2/12, Wilson upper bound 0.43 < 0.8')"
        ).format(table("labeler_quality")),
    )

    trusted = wait_campaign(
        kube_api,
        namespace,
        SYNTHETIC,
        lambda o: condition(o, "ModelTrusted").get("status") == "True",
        "ModelTrusted=True",
        operator=operator,
    )
    assert trusted is not None
    status = trusted["status"]
    assert status["model"]["version"] == "e2e-v1"
    assert status["model"]["threshold"] == 0.91
    assert (status["model"]["autoAccepted"], status["model"]["routedToPeople"]) == (10, 8)
    assert status["model"]["machineShare"] == "50%"
    quality = status["quality"]
    assert (quality["alpha"], quality["goldAnswers"], quality["goldAccuracy"]) == (0.41, 30, 0.8)
    assert quality["goldAccuracyLow"] < 0.8 < quality["goldAccuracyHigh"]
    assert (quality["labelersBlocked"], quality["disputedItems"]) == (1, 2)
    assert quality["consolidatedItems"] == 20
    wait_event(kube_api, namespace, SYNTHETIC, "LabelerBlocked", "mallory")
    labels = {"namespace": namespace, "name": SYNTHETIC}
    poll(
        lambda: operator.metric("labelops_campaign_model_trusted", **labels) == 1,
        "model_trusted 1",
        60,
        operator.log,
    )
    assert operator.metric("labelops_campaign_agreement_alpha", **labels) == 0.41
    assert operator.metric("labelops_campaign_min_agreement", **labels) == 0.6
    assert operator.metric("labelops_campaign_labelers_blocked", **labels) == 1

    execute(
        postgres_dsn,
        sql.SQL(
            "UPDATE {} SET trusted = false, braked = true, threshold = NULL,"
            " message = 'rolling window 40/50 below 0.95' WHERE version = 'e2e-v1'"
        ).format(table("model_versions")),
    )
    braked = wait_campaign(
        kube_api,
        namespace,
        SYNTHETIC,
        lambda o: condition(o, "ModelTrusted").get("reason") == "Braked",
        "ModelTrusted=False (Braked)",
        operator=operator,
    )
    message = condition(braked, "ModelTrusted")["message"]
    assert "e2e-v1" in message and "70 audits" in message and "rolling window" in message
    event = wait_event(kube_api, namespace, SYNTHETIC, "Braked", "e2e-v1")
    assert event["type"] == "Warning"
    poll(
        lambda: (
            operator.metric("labelops_campaign_model_trusted", **labels) == 0
            and operator.metric(
                "labelops_campaign_condition", type="ModelTrusted", status="False", **labels
            )
            == 1
        ),
        "model_trusted 0",
        60,
        operator.log,
    )
