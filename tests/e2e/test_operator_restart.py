"""The operator killed (SIGKILL) while provisioning, then restarted, finishes the work and
creates nothing twice."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from kubernetes import client
from test_operator_harness import (
    Operator,
    apply_campaigns,
    condition,
    crd_namespace,
    delete_campaigns_and_stop,
    get_campaign,
    get_object,
    is_ready,
    list_objects,
    list_topics,
    pg_query,
    secret_value,
    wait_campaign,
    wait_ready,
)

from labelops.api.naming import CampaignNames

pytestmark = pytest.mark.e2e

CAMPAIGNS = [f"crash-{i}" for i in range(8)]


@pytest.fixture(scope="module")
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    with crd_namespace(kube_api, "e2e-restart") as name:
        yield name


def test_killed_midway_and_restarted_converges_without_duplicates(
    kube_api: client.ApiClient,
    stack_env: dict[str, str],
    namespace: str,
    kafka_bootstrap: str,
    postgres_dsn: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    operator = Operator(tmp_path_factory.mktemp("operator"), stack_env, namespace)
    operator.start()
    try:
        apply_campaigns(
            kube_api, namespace, CAMPAIGNS, reclaimPolicy="Delete", **{"workers.replicas": 1}
        )
        # Kill as soon as the first campaign has any component done: the rest is mid-flight.
        wait_campaign(
            kube_api,
            namespace,
            CAMPAIGNS[0],
            lambda o: bool(condition(o, "TopicsReady")),
            "started",
            operator=operator,
        )
        operator.kill()
        ready_at_kill = sum(is_ready(get_campaign(kube_api, namespace, n)) for n in CAMPAIGNS)
        assert ready_at_kill < len(CAMPAIGNS), "killed too late to test anything"

        operator.start()
        for name in CAMPAIGNS:
            wait_ready(kube_api, namespace, name, timeout=120, operator=operator)

        prefix = f"labelops.{namespace}."
        # items, labels and predictions per campaign
        assert len(list_topics(kafka_bootstrap, prefix)) == 3 * len(CAMPAIGNS)
        deployments = list_objects(kube_api, "apps/v1", "Deployment", namespace)
        # One worker and one learner Deployment each (the example runs the built-in learner).
        names_seen = sorted(d["metadata"]["name"] for d in deployments)
        assert names_seen == sorted(
            f"{name}-{part}" for name in CAMPAIGNS for part in ("worker", "learner")
        )
        schema_prefix = CampaignNames(namespace, "x").schema.split("_x_")[0]
        roles = pg_query(
            postgres_dsn,
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)",
            schema_prefix,
        )
        assert len(roles) == len(CAMPAIGNS)
        for name in CAMPAIGNS:
            names = CampaignNames(namespace, name)
            # A crash between storing a password and creating the role must not leave a
            # Secret whose password the role does not have.
            secret = get_object(kube_api, "v1", "Secret", namespace, names.database_secret)
            assert secret is not None
            with psycopg.connect(secret_value(secret, "dsn"), connect_timeout=5) as conn:
                assert conn.execute("SELECT current_user").fetchone() == (names.role,)
            obj = get_campaign(kube_api, namespace, name)
            types = [c["type"] for c in (obj or {})["status"]["conditions"]]
            assert len(types) == len(set(types)), f"{name}: duplicated conditions {types}"
    finally:
        delete_campaigns_and_stop(kube_api, namespace, CAMPAIGNS, operator)
