"""The chart's settings against a confused deputy and for TLS to PostgreSQL, rendered by the
real helm: the worker image allowlist (default: the operator's own image repository), sslmode
and the CA Secret mounted into the operator (which hands it to workers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_chart_render import by_kind, env_of, helm_template, operator_container

from gotools import stack_tool
from labelops.operator.settings import OperatorSettings

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def helm() -> Path:
    return stack_tool("helm")


def test_the_allowlist_defaults_to_the_operators_own_repository(helm: Path) -> None:
    env = env_of(operator_container(helm_template(helm, "image.repository=reg.example/lo")))
    assert env["LABELOPS_WORKER_IMAGE_ALLOWLIST"] == "reg.example/lo"
    assert "LABELOPS_POSTGRES_SSLMODE" not in env
    assert "LABELOPS_POSTGRES_SSLROOTCERT" not in env


def test_the_allowlist_sslmode_and_ca_reach_the_operator(helm: Path) -> None:
    objects = helm_template(
        helm,
        "workerImageAllowlist={ghcr.io/team/*,reg/worker}",
        "postgres.sslmode=verify-full",
        "postgres.caSecret.name=pg-ca",
        "postgres.caSecret.key=root.pem",
    )
    container = operator_container(objects)
    env = env_of(container)
    assert env["LABELOPS_WORKER_IMAGE_ALLOWLIST"] == "ghcr.io/team/*,reg/worker"
    assert env["LABELOPS_POSTGRES_SSLMODE"] == "verify-full"
    assert env["LABELOPS_POSTGRES_SSLROOTCERT"] == "/etc/labelops/postgres-ca/root.pem"
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "postgres-ca"]
    assert mount == {
        "name": "postgres-ca",
        "mountPath": "/etc/labelops/postgres-ca",
        "readOnly": True,
    }
    pod = by_kind(objects, "Deployment")["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "postgres-ca"]
    assert volume["secret"] == {
        "secretName": "pg-ca",
        "items": [{"key": "root.pem", "path": "root.pem"}],
    }
    # What the chart renders, the operator reads.
    settings = OperatorSettings.from_env(
        {
            "LABELOPS_KAFKA_BOOTSTRAP": "k:9092",
            "LABELOPS_POSTGRES_DSN": "postgresql://a:b@db/x",
            "LABELOPS_WORKER_IMAGE_ALLOWLIST": env["LABELOPS_WORKER_IMAGE_ALLOWLIST"],
            "LABELOPS_POSTGRES_SSLMODE": env["LABELOPS_POSTGRES_SSLMODE"],
        }
    )
    assert settings.worker_image_allowlist == ("ghcr.io/team/*", "reg/worker")
    assert settings.postgres_sslmode == "verify-full"


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("postgres.sslmode=tls", "/postgres/sslmode"),
        ("workerImageAllowlist={a b}", "/workerImageAllowlist/0"),
    ],
)
def test_schema_refuses_bad_tls_and_allowlist_values(
    helm: Path, value: str, complaint: str
) -> None:
    stderr = helm_template(helm, value, expect_error=True)
    assert complaint in stderr
