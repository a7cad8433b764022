"""What the operator decides should exist for a campaign (pure planning, no I/O)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from labelops.api.campaign import DEFAULT_WORKER_IMAGE, CampaignSpec
from labelops.api.worker_configmap import CONFIG_KEY, WorkerConfig
from labelops.operator import plan

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "helpfulness-pairwise.yaml"
REF = plan.CampaignRef("human-data", "helpfulness-q4", "uid-123", 3)
ENV = plan.WorkerEnvironment(
    default_image="registry.local/labelops:1.2.3",
    kafka_bootstrap="kafka.svc:9092",
    postgres=plan.PostgresEndpoint("pg.svc", 5432, "labels"),
)


def example_spec(**changes: Any) -> CampaignSpec:
    documents = list(yaml.safe_load_all(EXAMPLE.read_text()))
    raw = next(d for d in documents if d["kind"] == "LabelingCampaign")["spec"]
    for dotted, value in changes.items():
        node = raw
        *path, last = dotted.split(".")
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    return CampaignSpec.model_validate(raw)


def owned_correctly(obj: dict[str, Any]) -> None:
    (owner,) = obj["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "labelops.dev/v1alpha1",
        "kind": "LabelingCampaign",
        "name": "helpfulness-q4",
        "uid": "uid-123",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert obj["metadata"]["namespace"] == "human-data"
    assert obj["metadata"]["labels"]["labelops.dev/campaign"] == "helpfulness-q4"


# --- Kafka ------------------------------------------------------------------------------


def test_three_topics_with_partitions_replication_and_retention_from_the_spec() -> None:
    topics = plan.desired_topics(REF.names, example_spec())
    assert [t.name for t in topics] == [
        "labelops.human-data.helpfulness-q4.items",
        "labelops.human-data.helpfulness-q4.labels",
        "labelops.human-data.helpfulness-q4.predictions",
    ]
    for topic in topics:
        assert topic.partitions == 6
        assert topic.replication_factor == 1
        assert topic.configs == {"retention.ms": "604800000", "cleanup.policy": "delete"}


@pytest.mark.parametrize(
    ("duration", "millis"),
    [("500ms", 500), ("30s", 30_000), ("15m", 900_000), ("12h", 43_200_000), ("7d", 604_800_000)],
)
def test_retention_durations(duration: str, millis: int) -> None:
    assert plan.retention_ms(duration) == millis


def test_a_malformed_retention_says_what_is_allowed() -> None:
    with pytest.raises(ValueError, match=r"<number><ms\|s\|m\|h\|d>"):
        plan.retention_ms("7 days")


# --- Postgres ---------------------------------------------------------------------------


def test_database_plan_uses_campaign_names_and_connection_limit() -> None:
    db = plan.desired_database(REF.names, example_spec(**{"quotas.postgres.connectionLimit": 7}))
    assert db == plan.DatabasePlan(REF.names.role, REF.names.schema, 7)


def test_database_secret_holds_username_password_and_a_working_dsn() -> None:
    db = plan.desired_database(REF.names, example_spec())
    dsn = plan.worker_dsn(db, "p@ss w'rd", ENV.postgres)
    secret = plan.database_secret(REF, db, "p@ss w'rd", dsn)
    owned_correctly(secret)
    assert secret["metadata"]["name"] == "helpfulness-q4-db"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["username"] == db.role
    assert data["password"] == "p@ss w'rd"
    assert conninfo_to_dict(data["dsn"]) == {
        "host": "pg.svc",
        "port": "5432",
        "dbname": "labels",
        "user": db.role,
        "password": "p@ss w'rd",
    }
    assert "stringData" not in secret  # would read back as a change on every pass


@pytest.mark.parametrize(
    ("dsn", "override", "expected"),
    [
        ("postgresql://admin:x@10.0.0.5:6543/labels", None, ("10.0.0.5", 6543, "labels")),
        ("host=db port=5433 dbname=lab user=a", None, ("db", 5433, "lab")),
        ("postgresql://admin:x@127.0.0.1:6543/labels", "pg.svc", ("pg.svc", 6543, "labels")),
        ("postgresql://admin:x@127.0.0.1:6543/labels", "pg.svc:5432", ("pg.svc", 5432, "labels")),
        ("postgresql://admin@127.0.0.1", None, ("127.0.0.1", 5432, "admin")),
    ],
)
def test_workers_reach_postgres_where_the_operator_says(
    dsn: str, override: str | None, expected: tuple[str, int, str]
) -> None:
    endpoint = plan.PostgresEndpoint.from_admin_dsn(dsn, override)
    assert (endpoint.host, endpoint.port, endpoint.dbname) == expected


# --- Kubernetes -------------------------------------------------------------------------


def test_config_map_carries_the_worker_config() -> None:
    spec = example_spec()
    cm = plan.config_map(REF, spec)
    owned_correctly(cm)
    assert cm["metadata"]["name"] == "helpfulness-q4-config"
    config = WorkerConfig.model_validate(json.loads(cm["data"][CONFIG_KEY]))
    assert config.schema_ == REF.names.schema
    assert config.topics.items == REF.names.items_topic
    assert config.topics.labels == REF.names.labels_topic
    assert config.consumer_group == REF.names.consumer_group
    assert config.task == spec.task
    assert config.target == spec.target
    assert config.quotas == spec.quotas


def test_worker_deployment_runs_labelops_worker_configured_by_refs() -> None:
    spec = example_spec()
    deployment = plan.worker_deployment(REF, spec, ENV, replicas=2, pod_config_hash="abc")
    owned_correctly(deployment)
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["labelops", "worker"]
    env = {e["name"]: e for e in container["env"]}
    assert env["LABELOPS_CAMPAIGN"]["valueFrom"]["configMapKeyRef"] == {
        "name": "helpfulness-q4-config",
        "key": "campaign.json",
    }
    assert env["LABELOPS_POSTGRES_DSN"]["valueFrom"]["secretKeyRef"] == {
        "name": "helpfulness-q4-db",
        "key": "dsn",
    }
    assert env["LABELOPS_KAFKA_BOOTSTRAP"]["value"] == "kafka.svc:9092"
    # No labeler token reaches the pod: workers read their digests from the database.
    assert not [
        source
        for source in container.get("envFrom", [])
        if (source.get("secretRef") or {}).get("name") == "helpfulness-q4-labelers"
        or source.get("prefix") == "LABELOPS_TOKEN_"
    ]
    assert container["ports"][0]["containerPort"] == 8080
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "512Mi"},
    }
    assert pod["metadata"]["annotations"]["labelops.dev/config-hash"] == "abc"


def test_worker_pods_run_unprivileged() -> None:
    deployment = plan.worker_deployment(REF, example_spec(), ENV, 1, "h")
    pod_spec = deployment["spec"]["template"]["spec"]
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["runAsUser"] != 0
    assert pod_spec["automountServiceAccountToken"] is False
    container = pod_spec["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}


def test_deployment_selector_matches_its_pods_and_the_service() -> None:
    deployment = plan.worker_deployment(REF, example_spec(), ENV, 1, "h")
    service = plan.worker_service(REF)
    owned_correctly(service)
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"][0]["port"] == 8080


def test_default_image_comes_from_the_operator_a_custom_one_from_the_spec() -> None:
    assert example_spec().workers.image == DEFAULT_WORKER_IMAGE
    default = plan.worker_deployment(REF, example_spec(), ENV, 1, "h")
    custom = plan.worker_deployment(REF, example_spec(**{"workers.image": "me/w:2"}), ENV, 1, "h")
    assert default["spec"]["template"]["spec"]["containers"][0]["image"] == ENV.default_image
    assert custom["spec"]["template"]["spec"]["containers"][0]["image"] == "me/w:2"


@pytest.mark.parametrize(
    ("paused", "target_met", "replicas"),
    # Paused keeps the workers: they refuse claims but ingest, relay and take submissions.
    [(False, False, 2), (True, False, 2), (False, True, 0), (True, True, 0)],
)
def test_workers_scale_to_zero_once_completed_but_not_while_paused(
    paused: bool, target_met: bool, replicas: int
) -> None:
    spec = example_spec(paused=paused)
    assert plan.desired_replicas(spec, target_met) == replicas


def test_config_hash_changes_with_any_input() -> None:
    base = plan.config_hash("config", "dsn")
    assert plan.config_hash("config", "dsn") == base
    assert plan.config_hash("config2", "dsn") != base
    assert plan.config_hash("config", "dsn2") != base
    # parts are delimited: moving a character between them changes the hash
    assert plan.config_hash("ab", "c") != plan.config_hash("a", "bc")


def test_no_resource_quota_unless_asked_for() -> None:
    assert plan.resource_quota(REF, example_spec()) is None


def test_resource_quota_caps_requests_and_pods() -> None:
    spec = example_spec(**{"quotas.kubernetes": {"cpu": "4", "memory": "8Gi", "pods": 10}})
    quota = plan.resource_quota(REF, spec)
    assert quota is not None
    owned_correctly(quota)
    assert quota["spec"]["hard"] == {"requests.cpu": "4", "requests.memory": "8Gi", "pods": "10"}


def test_resource_quota_with_only_pods() -> None:
    quota = plan.resource_quota(REF, example_spec(**{"quotas.kubernetes": {"pods": 3}}))
    assert quota is not None and quota["spec"]["hard"] == {"pods": "3"}


def test_campaign_ref_from_a_kopf_body() -> None:
    body = {"metadata": {"namespace": "ns", "name": "n", "uid": "u", "generation": 4}}
    assert plan.CampaignRef.from_body(body) == plan.CampaignRef("ns", "n", "u", 4)
