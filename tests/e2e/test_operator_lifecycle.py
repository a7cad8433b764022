"""The example campaign on the real stack: Ready, what it created in Kafka, Postgres and
Kubernetes, idempotence, spec changes, refusals, progress to Completed, and isolation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kubernetes import client
from psycopg import sql
from test_operator_harness import (
    Operator,
    apply,
    campaign_documents,
    condition,
    example_documents,
    get_campaign,
    get_object,
    install_crd,
    is_ready,
    kstatus_of,
    module_operator,
    new_namespace,
    patch_spec,
    pg_query,
    role_and_schema,
    secret_value,
    topic_state,
    wait_campaign,
    wait_event,
    wait_ready,
)

from devstack import podrunner
from labelops.api.naming import CampaignNames
from labelops.store.progress import CounterDelta, bump_counters

pytestmark = pytest.mark.e2e

EXAMPLE_NAME = "helpfulness-q4"


@pytest.fixture(scope="module")
def namespace(kube_api: client.ApiClient) -> str:
    install_crd(kube_api)
    return new_namespace(kube_api, "e2e-lifecycle")


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
def example(kube_api: client.ApiClient, namespace: str, operator: Operator) -> dict[str, Any]:
    apply(kube_api, example_documents(namespace))
    return wait_ready(kube_api, namespace, EXAMPLE_NAME, operator=operator)


def names(namespace: str, name: str = EXAMPLE_NAME) -> CampaignNames:
    return CampaignNames(namespace, name)


def test_example_campaign_becomes_ready_with_status_for_humans_and_gitops(
    example: dict[str, Any], namespace: str
) -> None:
    status = example["status"]
    n = names(namespace)
    assert status["phase"] == "Running"
    assert status["topics"] == {
        "items": n.items_topic,
        "labels": n.labels_topic,
        "predictions": n.predictions_topic,
    }
    assert status["schema"] == n.schema
    assert status["databaseSecret"] == n.database_secret
    for type_ in ("TopicsReady", "SchemaReady", "WorkersReady"):
        assert condition(example, type_)["status"] == "True", type_
    assert condition(example, "Stalled")["status"] == "False"
    assert condition(example, "Reconciling")["status"] == "False"
    assert condition(example, "TargetMet")["status"] == "False"
    assert kstatus_of(example) == "Current"


def test_topics_exist_in_kafka_as_specified(
    example: dict[str, Any], namespace: str, kafka_bootstrap: str
) -> None:
    n = names(namespace)
    for topic in (n.items_topic, n.labels_topic):
        state = topic_state(kafka_bootstrap, topic)
        assert state is not None, f"{topic} missing"
        partitions, replication, configs = state
        assert (partitions, replication) == (6, 1)
        assert configs["retention.ms"] == str(7 * 24 * 3600 * 1000)
        assert configs["cleanup.policy"] == "delete"


def test_schema_and_role_exist_in_postgres(
    example: dict[str, Any], namespace: str, postgres_dsn: str
) -> None:
    n = names(namespace)
    role, owner = role_and_schema(postgres_dsn, n.role)
    assert role == (20, True), "role with LOGIN and CONNECTION LIMIT 20"
    assert owner == n.role, "schema owned by the campaign's own role"
    tables = pg_query(
        postgres_dsn,
        "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = %s",
        n.schema,
    )
    assert ("schema_migrations", n.role) in tables
    assert all(table_owner == n.role for _, table_owner in tables)


def test_kubernetes_children_are_owned_by_the_campaign(
    example: dict[str, Any], kube_api: client.ApiClient, namespace: str, postgres_dsn: str
) -> None:
    n = names(namespace)
    uid = example["metadata"]["uid"]
    children = {
        "Deployment": get_object(kube_api, "apps/v1", "Deployment", namespace, n.worker),
        "Service": get_object(kube_api, "v1", "Service", namespace, n.worker),
        "ConfigMap": get_object(kube_api, "v1", "ConfigMap", namespace, n.config_map),
        "Secret": get_object(kube_api, "v1", "Secret", namespace, n.database_secret),
    }
    for kind, obj in children.items():
        assert obj is not None, f"{kind} missing"
        (owner,) = obj["metadata"]["ownerReferences"]
        assert (owner["uid"], owner["controller"], owner["blockOwnerDeletion"]) == (
            uid,
            True,
            True,
        ), kind
    deployment = children["Deployment"]
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2
    assert deployment["status"]["availableReplicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["labelops", "worker"]
    # The credentials the operator stored really open a session as the campaign's role.
    secret = children["Secret"]
    assert secret is not None
    with psycopg.connect(secret_value(secret, "dsn"), connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (n.role,)


def test_condition_transitions_are_events(
    example: dict[str, Any], kube_api: client.ApiClient, namespace: str
) -> None:
    event = wait_event(kube_api, namespace, EXAMPLE_NAME, "Provisioned", "Ready=True")
    assert event["type"] == "Normal"


def test_role_cannot_read_another_campaigns_schema(
    example: dict[str, Any],
    kube_api: client.ApiClient,
    namespace: str,
    operator: Operator,
) -> None:
    apply(kube_api, campaign_documents(namespace, "other-campaign", **{"workers.replicas": 1}))
    wait_ready(kube_api, namespace, "other-campaign", operator=operator)
    other = get_object(kube_api, "v1", "Secret", namespace, "other-campaign-db")
    assert other is not None
    mine = names(namespace)
    with psycopg.connect(secret_value(other, "dsn"), connect_timeout=5) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute(
                sql.SQL("SELECT * FROM {}").format(sql.Identifier(mine.schema, "schema_migrations"))
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.sneaky (id int)")


def test_a_second_pass_changes_nothing(
    example: dict[str, Any],
    kube_api: client.ApiClient,
    namespace: str,
    operator: Operator,
    kafka_bootstrap: str,
) -> None:
    n = names(namespace)
    kinds = [
        ("apps/v1", "Deployment", n.worker),
        ("v1", "Service", n.worker),
        ("v1", "ConfigMap", n.config_map),
        ("v1", "Secret", n.database_secret),
    ]

    def versions() -> dict[str, Any]:
        found = {}
        for api_version, kind, name in kinds:
            obj = get_object(kube_api, api_version, kind, namespace, name)
            assert obj is not None
            found[kind] = obj["metadata"]["resourceVersion"]
        return found

    before_objects = versions()
    # The progress loop's first write (progress, and ModelTrusted under model.autoAccept)
    # may land a tick after Ready: compare the pass with a status that has it.
    before = wait_campaign(
        kube_api,
        namespace,
        EXAMPLE_NAME,
        lambda o: bool(((o or {}).get("status") or {}).get("lastProgressAt")),
        "first progress written",
        operator=operator,
    )
    assert before is not None
    before_topics = topic_state(kafka_bootstrap, n.items_topic)
    # A restart runs the resume handler: a full reconcile pass over the same spec.
    operator.stop()
    operator.start()
    operator.wait_metric("labelops_reconciles_total", 2, handler="resume", outcome="success")
    after = get_campaign(kube_api, namespace, EXAMPLE_NAME)
    assert after is not None
    assert versions() == before_objects
    assert topic_state(kafka_bootstrap, n.items_topic) == before_topics
    assert after["status"]["conditions"] == before["status"]["conditions"]


def test_spec_updates_converge(
    example: dict[str, Any],
    kube_api: client.ApiClient,
    namespace: str,
    operator: Operator,
    kafka_bootstrap: str,
) -> None:
    n = names(namespace)
    patch_spec(kube_api, namespace, EXAMPLE_NAME, {"kafka": {"partitions": 8}})
    wait_ready(kube_api, namespace, EXAMPLE_NAME, operator=operator)
    for topic in (n.items_topic, n.labels_topic):
        state = topic_state(kafka_bootstrap, topic)
        assert state is not None and state[0] == 8

    # 3 replicas need 3 x 9 + 1 connections: more than the default connectionLimit of 20
    # (tests/e2e/test_operator_convergence.py shows the Stalled verdict).
    patch_spec(
        kube_api,
        namespace,
        EXAMPLE_NAME,
        {"workers": {"replicas": 3}, "quotas": {"postgres": {"connectionLimit": 28}}},
    )
    wait_ready(kube_api, namespace, EXAMPLE_NAME, operator=operator)
    deployment = get_object(kube_api, "apps/v1", "Deployment", namespace, n.worker)
    assert deployment is not None
    assert (deployment["spec"]["replicas"], deployment["status"]["availableReplicas"]) == (3, 3)

    patch_spec(kube_api, namespace, EXAMPLE_NAME, {"paused": True})
    paused = wait_campaign(
        kube_api,
        namespace,
        EXAMPLE_NAME,
        lambda o: is_ready(o) and (o or {}).get("status", {}).get("phase") == "Paused",
        "Ready and Paused",
        operator=operator,
    )
    # Paused workers keep running (ingest, relay, submissions of held leases); they refuse
    # new claims (tests/e2e/test_operator_convergence.py).
    assert condition(paused, "WorkersReady")["reason"] == "Available"
    deployment = get_object(kube_api, "apps/v1", "Deployment", namespace, n.worker)
    assert deployment is not None and deployment["spec"]["replicas"] == 3

    patch_spec(kube_api, namespace, EXAMPLE_NAME, {"paused": False})
    resumed = wait_ready(kube_api, namespace, EXAMPLE_NAME, operator=operator)
    assert resumed["status"]["phase"] == "Running"
    deployment = get_object(kube_api, "apps/v1", "Deployment", namespace, n.worker)
    assert deployment is not None and deployment["status"]["availableReplicas"] == 3


def test_partition_decrease_is_refused_and_the_topic_left_alone(
    example: dict[str, Any],
    kube_api: client.ApiClient,
    namespace: str,
    operator: Operator,
    kafka_bootstrap: str,
) -> None:
    n = names(namespace)
    live = topic_state(kafka_bootstrap, n.items_topic)
    assert live is not None
    current = live[0]
    generation = patch_spec(kube_api, namespace, EXAMPLE_NAME, {"kafka": {"partitions": 2}})
    stalled = wait_campaign(
        kube_api,
        namespace,
        EXAMPLE_NAME,
        lambda o: condition(o, "Stalled").get("status") == "True",
        "Stalled",
        operator=operator,
    )
    assert stalled is not None
    assert condition(stalled, "Stalled")["reason"] == "NotSupported"
    assert "kafka.partitions: 2 is fewer than" in condition(stalled, "Stalled")["message"]
    assert condition(stalled, "Ready")["status"] == "False"
    assert condition(stalled, "Reconciling")["status"] == "False"
    assert stalled["status"]["phase"] == "Failed"
    assert stalled["status"]["observedGeneration"] == generation
    assert kstatus_of(stalled) == "Failed"
    live_after = topic_state(kafka_bootstrap, n.items_topic)
    assert live_after is not None and live_after[0] == current
    wait_event(kube_api, namespace, EXAMPLE_NAME, "NotSupported")

    patch_spec(kube_api, namespace, EXAMPLE_NAME, {"kafka": {"partitions": current}})
    healed = wait_ready(kube_api, namespace, EXAMPLE_NAME, operator=operator)
    assert condition(healed, "Stalled")["status"] == "False"


def test_missing_token_secret_stalls_until_it_exists(
    kube_api: client.ApiClient, namespace: str, operator: Operator
) -> None:
    secret, campaign = campaign_documents(namespace, "no-tokens")
    apply(kube_api, [campaign])
    stalled = wait_campaign(
        kube_api,
        namespace,
        "no-tokens",
        lambda o: condition(o, "Stalled").get("reason") == "SecretNotFound",
        "Stalled with SecretNotFound",
        operator=operator,
    )
    message = condition(stalled, "Stalled")["message"]
    assert "spec.labelers.tokenSecretRef" in message and "no-tokens-labelers" in message
    assert get_object(kube_api, "apps/v1", "Deployment", namespace, "no-tokens-worker") is None
    apply(kube_api, [secret])
    wait_ready(kube_api, namespace, "no-tokens", timeout=120, operator=operator)


def test_invalid_label_schema_is_stalled_with_invalid_spec(
    kube_api: client.ApiClient, namespace: str, operator: Operator
) -> None:
    apply(
        kube_api,
        campaign_documents(namespace, "bad-schema", **{"task.labelSchema": {"type": 12}}),
    )
    stalled = wait_campaign(
        kube_api,
        namespace,
        "bad-schema",
        lambda o: condition(o, "Stalled").get("status") == "True",
        "Stalled",
        operator=operator,
    )
    assert condition(stalled, "Stalled")["reason"] == "InvalidSpec"
    assert "/spec/task/labelSchema" in condition(stalled, "Stalled")["message"]
    patch_spec(kube_api, namespace, "bad-schema", {"task": {"labelSchema": {"type": "object"}}})
    wait_ready(kube_api, namespace, "bad-schema", operator=operator)


def test_progress_is_reported_and_target_met_completes_the_campaign(
    kube_api: client.ApiClient, namespace: str, operator: Operator, postgres_dsn: str
) -> None:
    # labelsPerItem 3 whatever the example says: the figures below are 4 items x 3 labels,
    # counted in labels as every item takes exactly 3 (no adaptive overlap, no auto-accept).
    small = {"target.items": 4, "target.labelsPerItem": 3}
    docs = campaign_documents(namespace, "small", **small)
    for removed in ("quality", "model"):
        docs[1]["spec"].pop(removed, None)
    apply(kube_api, docs)
    wait_ready(kube_api, namespace, "small", operator=operator)
    schema = names(namespace, "small").schema

    def record(delta: CounterDelta) -> None:
        # What workers do in the transaction that accepts a label.
        with psycopg.connect(postgres_dsn, autocommit=True) as conn, conn.cursor() as cur:
            bump_counters(cur, schema, delta)

    record(CounterDelta(items_total=4, items_completed=1, labels=6, human_labeled=6))
    partial = wait_campaign(
        kube_api,
        namespace,
        "small",
        lambda o: ((o or {}).get("status") or {}).get("progress", {}).get("labels") == 6,
        "showing 6 labels",
        operator=operator,
    )
    assert partial is not None
    progress = partial["status"]["progress"]
    assert (progress["labelsTarget"], progress["summary"]) == (12, "6/12")
    assert progress["percent"] == 50.0
    assert partial["status"]["counters"]["humanLabeled"] == 6

    record(CounterDelta(items_completed=3, labels=6, human_labeled=6))
    done = wait_campaign(
        kube_api,
        namespace,
        "small",
        lambda o: is_ready(o) and ((o or {}).get("status") or {}).get("phase") == "Completed",
        "Completed",
        operator=operator,
    )
    assert condition(done, "TargetMet")["status"] == "True"
    assert condition(done, "WorkersReady")["reason"] == "ScaledToZero"
    deployment = get_object(kube_api, "apps/v1", "Deployment", namespace, "small-worker")
    assert deployment is not None and deployment["spec"]["replicas"] == 0
    wait_event(kube_api, namespace, "small", "TargetMet")


def test_worker_process_starts_from_what_the_operator_wrote(
    example: dict[str, Any], kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """Pods are simulated; run the Deployment's pod as a local process, as the demo does."""
    pods = podrunner.start_pods(kube_api, namespace, names(namespace).worker, tmp_path)
    try:
        for pod in pods:
            pod.wait_ready()
    finally:
        podrunner.stop_pods(pods, tmp_path)
