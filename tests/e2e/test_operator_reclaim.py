"""Deleting a campaign: Retain keeps topics, schema and role (and says so); Delete drops them.
Kubernetes children go either way, by ownerReferences."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client
from test_operator_harness import (
    Operator,
    apply,
    campaign_documents,
    crd_namespace,
    delete_campaign,
    drop_campaign_data,
    get_object,
    role_and_schema,
    running_operator,
    topic_state,
    wait_campaign,
    wait_event,
    wait_ready,
)

from labelops.api.naming import CampaignNames

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    with crd_namespace(kube_api, "e2e-reclaim") as name:
        yield name


@pytest.fixture(scope="module")
def operator(
    stack_env: dict[str, str], namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    with running_operator(tmp_path_factory.mktemp("operator"), stack_env, namespace) as op:
        yield op


def create_and_delete(
    api: client.ApiClient, namespace: str, name: str, policy: str, operator: Operator
) -> str:
    apply(api, campaign_documents(namespace, name, reclaimPolicy=policy))
    uid = wait_ready(api, namespace, name, operator=operator)["metadata"]["uid"]
    delete_campaign(api, namespace, name)
    wait_campaign(api, namespace, name, lambda o: o is None, "deleted", operator=operator)
    return str(uid)


def children_gone(api: client.ApiClient, namespace: str, names: CampaignNames) -> bool:
    # Garbage collection is asynchronous; watch the campaign, then poll the children via
    # their own absence on the API (each get is a fresh read).
    return all(
        get_object(api, v, k, namespace, n) is None
        for v, k, n in (
            ("apps/v1", "Deployment", names.worker),
            ("v1", "ConfigMap", names.config_map),
            ("v1", "Secret", names.database_secret),
            ("v1", "Service", names.worker),
        )
    )


def wait_children_gone(api: client.ApiClient, namespace: str, names: CampaignNames) -> None:
    from kubernetes import watch

    if children_gone(api, namespace, names):
        return
    apps = client.AppsV1Api(api)
    for event in watch.Watch().stream(
        apps.list_namespaced_deployment,
        namespace,
        field_selector=f"metadata.name={names.worker}",
        timeout_seconds=60,
    ):
        if event["type"] == "DELETED" and children_gone(api, namespace, names):
            return
    assert children_gone(api, namespace, names), "children not garbage-collected in 60s"


def test_retain_keeps_topics_schema_and_role_and_says_so(
    kube_api: client.ApiClient,
    namespace: str,
    operator: Operator,
    kafka_bootstrap: str,
    postgres_dsn: str,
) -> None:
    names = CampaignNames(namespace, "kept")
    try:
        create_and_delete(kube_api, namespace, "kept", "Retain", operator)
        event = wait_event(kube_api, namespace, "kept", "Retained")
        assert names.schema in event["message"] and names.items_topic in event["message"]
        assert topic_state(kafka_bootstrap, names.items_topic) is not None
        assert topic_state(kafka_bootstrap, names.labels_topic) is not None
        role, owner = role_and_schema(postgres_dsn, names.role)
        assert role is not None and owner == names.role
        wait_children_gone(kube_api, namespace, names)
    finally:
        drop_campaign_data(
            kafka_bootstrap, postgres_dsn, names.schema, [names.items_topic, names.labels_topic]
        )


def test_delete_drops_topics_schema_and_role(
    kube_api: client.ApiClient,
    namespace: str,
    operator: Operator,
    kafka_bootstrap: str,
    postgres_dsn: str,
) -> None:
    names = CampaignNames(namespace, "dropped")
    create_and_delete(kube_api, namespace, "dropped", "Delete", operator)
    assert topic_state(kafka_bootstrap, names.items_topic) is None
    assert topic_state(kafka_bootstrap, names.labels_topic) is None
    assert role_and_schema(postgres_dsn, names.role) == (None, None)
    event = wait_event(kube_api, namespace, "dropped", "Reclaimed")
    assert f"schema {names.schema}" in event["message"]
    wait_children_gone(kube_api, namespace, names)


def test_a_campaign_recreated_after_retain_gets_working_credentials(
    kube_api: client.ApiClient,
    namespace: str,
    operator: Operator,
    kafka_bootstrap: str,
    postgres_dsn: str,
) -> None:
    """The role survives Retain, the Secret does not: the new Secret's password must work."""
    import psycopg
    from test_operator_harness import secret_value

    names = CampaignNames(namespace, "again")
    try:
        create_and_delete(kube_api, namespace, "again", "Retain", operator)
        wait_children_gone(kube_api, namespace, names)
        apply(kube_api, campaign_documents(namespace, "again"))
        wait_ready(kube_api, namespace, "again", operator=operator)
        secret = get_object(kube_api, "v1", "Secret", namespace, names.database_secret)
        assert secret is not None
        with psycopg.connect(secret_value(secret, "dsn"), connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (names.role,)
        delete_campaign(kube_api, namespace, "again")
        wait_campaign(kube_api, namespace, "again", lambda o: o is None, "deleted")
    finally:
        drop_campaign_data(
            kafka_bootstrap, postgres_dsn, names.schema, [names.items_topic, names.labels_topic]
        )
