"""The operator killed (SIGKILL) while it deletes campaigns (reclaimPolicy Delete), then
restarted, finishes every deletion: the resources go, their topics, schemas and roles with
them, and nothing is left behind (issue 12's chaos: the operator mid-delete; mid-provisioning
is test_operator_restart.py)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from kubernetes import client
from test_operator_harness import (
    Operator,
    apply_campaigns,
    crd_namespace,
    delete_campaign,
    delete_campaigns_and_stop,
    get_campaign,
    list_objects,
    list_topics,
    pg_query,
    poll,
    wait_campaign,
    wait_ready,
)

from labelops.api.naming import CampaignNames
from labelops.clients.postgres import TAKE_PROVISIONING_LOCK

pytestmark = pytest.mark.e2e

CAMPAIGNS = [f"gone-{i}" for i in range(4)]
TOPICS_PER_CAMPAIGN = 3  # items, labels and predictions


@pytest.fixture(scope="module")
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    with crd_namespace(kube_api, "e2e-middelete") as name:
        yield name


def test_killed_while_deleting_and_restarted_removes_everything(
    kube_api: client.ApiClient,
    stack_env: dict[str, str],
    namespace: str,
    kafka_bootstrap: str,
    postgres_dsn: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    operator = Operator(tmp_path_factory.mktemp("operator"), stack_env, namespace)
    operator.start()
    prefix = f"labelops.{namespace}."
    schemas = sorted(CampaignNames(namespace, name).schema for name in CAMPAIGNS)
    try:
        apply_campaigns(
            kube_api, namespace, CAMPAIGNS, reclaimPolicy="Delete", **{"workers.replicas": 1}
        )
        for name in CAMPAIGNS:
            wait_ready(kube_api, namespace, name, timeout=180, operator=operator)
        all_topics = TOPICS_PER_CAMPAIGN * len(CAMPAIGNS)
        assert len(list_topics(kafka_bootstrap, prefix)) == all_topics

        # The provisioning lock held here: each deletion gets as far as its schema's DROP
        # (topics go first) and waits there, so the kill lands mid-delete however fast the
        # machine (without it, four deletions could all finish between two polls).
        with psycopg.connect(postgres_dsn) as holder:
            holder.execute(TAKE_PROVISIONING_LOCK)
            for name in CAMPAIGNS:
                delete_campaign(kube_api, namespace, name)
            poll(
                lambda: len(list_topics(kafka_bootstrap, prefix)) < all_topics,
                "deleting anything",
                timeout=120,
                log=operator.log,
            )
            operator.kill()
            holder.rollback()
        left = [n for n in CAMPAIGNS if get_campaign(kube_api, namespace, n) is not None]
        assert left == CAMPAIGNS, "a campaign was deleted with its schema's DROP held back"
        assert _existing_schemas(postgres_dsn, schemas) == schemas

        operator.start()
        for name in CAMPAIGNS:
            wait_campaign(
                kube_api, namespace, name, lambda o: o is None, "deleted", 120, operator=operator
            )
        assert list_topics(kafka_bootstrap, prefix) == []
        assert _existing_schemas(postgres_dsn, schemas) == []
        roles = pg_query(
            postgres_dsn, "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", schemas
        )
        assert roles == []
        # The learner's Deployment goes by its owner reference, with the garbage collector.
        poll(
            lambda: list_objects(kube_api, "apps/v1", "Deployment", namespace) == [],
            "every Deployment gone",
            timeout=60,
        )
    finally:
        delete_campaigns_and_stop(kube_api, namespace, CAMPAIGNS, operator)


def _existing_schemas(dsn: str, schemas: list[str]) -> list[str]:
    rows = pg_query(
        dsn, "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) ORDER BY 1", schemas
    )
    return sorted(str(r[0]) for r in rows)
