"""The operator's guards, as pure decisions: the connection budget a campaign's workers need
against quotas.postgres.connectionLimit, the worker image allowlist, the tokens Secret's
opt-in label, TLS settings passed to every DSN the operator writes, and reading them (and the
allowlist) from the operator's environment."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from labelops.api.campaign import CampaignSpec
from labelops.api.kafka_connection import KafkaConnection
from labelops.operator import plan
from labelops.operator.settings import ConfigError, OperatorSettings
from labelops.worker import config as worker_config
from labelops.worker import runtime as worker_runtime

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "helpfulness-pairwise.yaml"
REF = plan.CampaignRef("human-data", "helpfulness-q4", "uid-123", 3)
ENV = plan.WorkerEnvironment(
    default_image="registry.local/labelops:1.2.3",
    kafka_bootstrap="kafka.svc:9092",
    postgres=plan.PostgresEndpoint("pg.svc", 5432, "labels"),
)
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def spec(**changes: Any) -> CampaignSpec:
    documents = list(yaml.safe_load_all(EXAMPLE.read_text()))
    raw = next(d for d in documents if d["kind"] == "LabelingCampaign")["spec"]
    for dotted, value in changes.items():
        node = raw
        *path, last = dotted.split(".")
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    return CampaignSpec.model_validate(raw)


# --- connection budget --------------------------------------------------------------------


@pytest.mark.parametrize("processes", [1, 2])
def test_the_budget_mirrors_the_workers_own_pool_sizing(processes: int) -> None:
    """worker/main.py opens, per replica: processes x (connections_per_process + batch_writers)
    + 3 (ingest, relay, quality) with one process, threads + 3 + batch writers."""
    assert plan.WORKER_BACKGROUND_CONNECTIONS == worker_runtime.BACKGROUND_CONNECTIONS
    assert plan.WORKER_THREADS == worker_config.DEFAULT_THREADS
    assert plan.WORKER_MAX_PROCESSES == worker_config.MAX_DEFAULT_PROCESSES
    settings = worker_config.WorkerSettings(
        campaign=None,  # type: ignore[arg-type]  # only the pool arithmetic is read
        tokens={},
        postgres_dsn="",
        kafka=KafkaConnection(""),
        processes=processes,
    )
    worker_opens = (
        processes * (settings.connections_per_process + settings.batch_writers)
        + plan.WORKER_BACKGROUND_CONNECTIONS
    )
    assert plan._budget(1, processes).per_replica == worker_opens


def test_defaults_fit_two_replicas_in_the_default_limit() -> None:
    two = spec(**{"workers.replicas": 2})
    assert two.quotas.postgres.connection_limit == 20
    budget = plan.connection_budget(two)
    assert (budget.per_replica, budget.required) == (9, 19)
    assert plan.connection_limit_problem(two) is None


def test_three_replicas_exceed_the_default_limit_with_the_arithmetic() -> None:
    message = plan.connection_limit_problem(spec(**{"workers.replicas": 3}))
    assert message is not None
    assert "spec.quotas.postgres.connectionLimit 20" in message
    assert "spec.workers.replicas 3" in message
    assert "3 replicas x 9 connections" in message
    assert "+ 1 for labelops export = 28 > 20" in message
    assert "at least 28" in message
    assert "at most 2" in message


def test_a_raised_limit_admits_more_replicas() -> None:
    assert (
        plan.connection_limit_problem(
            spec(**{"workers.replicas": 3, "quotas.postgres.connectionLimit": 28})
        )
        is None
    )
    assert plan.connection_limit_problem(
        spec(**{"workers.replicas": 3, "quotas.postgres.connectionLimit": 27})
    )


# --- worker image allowlist ------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("labelops:0.1.0", "labelops"),
        ("labelops", "labelops"),
        ("reg:5000/team/labelops:2", "reg:5000/team/labelops"),
        ("reg:5000/team/labelops", "reg:5000/team/labelops"),
        ("ghcr.io/a/b@sha256:abc", "ghcr.io/a/b"),
        ("ghcr.io/a/b:1@sha256:abc", "ghcr.io/a/b"),
    ],
)
def test_image_repository(image: str, repository: str) -> None:
    assert plan.image_repository(image) == repository


def test_the_operators_own_repository_is_allowed_by_default() -> None:
    assert plan.image_problem(spec(), ENV) is None  # the default image
    same_repo = spec(**{"workers.image": "registry.local/labelops:9.9@sha256:ff"})
    assert plan.image_problem(same_repo, ENV) is None


def test_another_image_is_refused_naming_the_field_and_what_is_allowed() -> None:
    message = plan.image_problem(spec(**{"workers.image": "evil.example/miner:1"}), ENV)
    assert message is not None
    assert message.startswith("spec.workers.image 'evil.example/miner:1'")
    assert "'registry.local/labelops'" in message
    assert "LABELOPS_WORKER_IMAGE_ALLOWLIST" in message
    # A repository that merely starts like an allowed one is another repository.
    assert plan.image_problem(spec(**{"workers.image": "registry.local/labelops-x:1"}), ENV)


def test_the_allowlist_admits_globs() -> None:
    env = plan.WorkerEnvironment(
        ENV.default_image, ENV.kafka_bootstrap, ENV.postgres, ("ghcr.io/team/*",)
    )
    assert plan.image_problem(spec(**{"workers.image": "ghcr.io/team/worker:3"}), env) is None
    assert plan.image_problem(spec(**{"workers.image": "ghcr.io/other/worker:3"}), env)


# --- tokens Secret opt-in ----------------------------------------------------------------


def secret(labels: dict[str, str] | None) -> dict[str, Any]:
    return {"metadata": {"name": "helpfulness-labelers", "labels": labels}, "data": {}}


def test_a_tokens_secret_labeled_for_this_campaign_is_accepted() -> None:
    ok = secret({plan.TOKEN_OPT_IN_LABEL: REF.name})
    assert plan.TOKEN_OPT_IN_LABEL == "labelops.dev/campaign"
    assert plan.token_secret_problem(REF, spec(), ok) is None


@pytest.mark.parametrize(
    ("labels", "says"),
    [
        (None, "has no such label"),
        ({"app": "x"}, "has no such label"),
        ({"labelops.dev/campaign": "other"}, "is labeled for 'other'"),
    ],
)
def test_a_tokens_secret_not_opted_in_is_refused(labels: dict[str, str] | None, says: str) -> None:
    message = plan.token_secret_problem(REF, spec(), secret(labels))
    assert message is not None
    assert message.startswith("spec.labelers.tokenSecretRef: Secret human-data/")
    assert says in message
    assert f"labelops.dev/campaign={REF.name}" in message


# --- TLS to PostgreSQL ------------------------------------------------------------------


def test_without_tls_settings_the_dsn_has_none() -> None:
    db = plan.desired_database(REF.names, spec())
    params = conninfo_to_dict(plan.worker_dsn(db, "pw", ENV.postgres))
    assert "sslmode" not in params and "sslrootcert" not in params


def test_sslmode_and_ca_reach_the_dsn_the_secret_and_the_pods() -> None:
    endpoint = plan.PostgresEndpoint("pg.svc", 5432, "labels", "verify-full", CA)
    env = plan.WorkerEnvironment(ENV.default_image, ENV.kafka_bootstrap, endpoint)
    db = plan.desired_database(REF.names, spec())
    dsn = plan.worker_dsn(db, "pw", endpoint)
    params = conninfo_to_dict(dsn)
    assert params["sslmode"] == "verify-full"
    assert params["sslrootcert"] == "/etc/labelops/postgres-ca/ca.crt"
    data = plan.database_secret(REF, db, "pw", dsn, endpoint.ca_pem)["data"]
    assert base64.b64decode(data["ca.crt"]).decode() == CA
    pod = plan.worker_deployment(REF, spec(), env, 1, "h")["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "postgres-ca"]
    assert mount == {"name": "postgres-ca", "mountPath": plan.WORKER_CA_DIR, "readOnly": True}
    (volume,) = [v for v in pod["volumes"] if v["name"] == "postgres-ca"]
    assert volume["secret"] == {
        "secretName": REF.names.database_secret,
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }


def test_no_ca_no_volume() -> None:
    pod = plan.worker_deployment(REF, spec(), ENV, 1, "h")["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]


def test_sslmode_defaults_to_the_admin_dsns() -> None:
    endpoint = plan.PostgresEndpoint.from_admin_dsn("postgresql://a:b@db/x?sslmode=require")
    assert endpoint.sslmode == "require"
    overridden = plan.PostgresEndpoint.from_admin_dsn(
        "postgresql://a:b@db/x?sslmode=require", sslmode="verify-ca"
    )
    assert overridden.sslmode == "verify-ca"


# --- the operator's environment -------------------------------------------------------------

BASE = {"LABELOPS_KAFKA_BOOTSTRAP": "k:9092", "LABELOPS_POSTGRES_DSN": "postgresql://a:b@db/x"}


def test_settings_default_to_no_tls_and_no_extra_images() -> None:
    settings = OperatorSettings.from_env(BASE)
    assert settings.postgres_sslmode is None
    assert settings.postgres_ca_pem is None
    assert settings.worker_image_allowlist == ()


def test_settings_read_sslmode_ca_and_allowlist(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text(CA)
    settings = OperatorSettings.from_env(
        {
            **BASE,
            "LABELOPS_POSTGRES_DSN": f"postgresql://a:b@db/x?sslmode=verify-full&sslrootcert={ca}",
            "LABELOPS_WORKER_IMAGE_ALLOWLIST": "ghcr.io/team/*, reg/labelops",
        }
    )
    assert settings.postgres_sslmode == "verify-full"
    assert settings.postgres_ca_pem == CA
    assert settings.worker_image_allowlist == ("ghcr.io/team/*", "reg/labelops")


def test_a_bad_sslmode_or_ca_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"LABELOPS_POSTGRES_SSLMODE='tls'.*allowed disable"):
        OperatorSettings.from_env({**BASE, "LABELOPS_POSTGRES_SSLMODE": "tls"})
    with pytest.raises(ConfigError, match=r"LABELOPS_POSTGRES_SSLROOTCERT.*cannot be read"):
        OperatorSettings.from_env(
            {**BASE, "LABELOPS_POSTGRES_SSLROOTCERT": str(tmp_path / "missing.crt")}
        )


def test_a_malformed_admin_dsn_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as refused:
        OperatorSettings.from_env({**BASE, "LABELOPS_POSTGRES_DSN": "host=db password=s3cret x"})
    assert "s3cret" not in str(refused.value)
    assert "LABELOPS_POSTGRES_DSN" in str(refused.value)
