"""The operator's settings from the environment (what plan.WorkerEnvironment is made of)."""

from __future__ import annotations

import pytest

from labelops.api.campaign import DEFAULT_WORKER_IMAGE
from labelops.operator.settings import ConfigError, OperatorSettings

BASE = {"LABELOPS_KAFKA_BOOTSTRAP": "k:9092", "LABELOPS_POSTGRES_DSN": "postgresql://a@h/db"}


def test_defaults() -> None:
    config = OperatorSettings.from_env(BASE)
    assert config.worker_image == DEFAULT_WORKER_IMAGE
    assert config.kafka_bootstrap_for_workers == "k:9092"
    assert config.worker_postgres_host is None
    assert (config.health_port, config.metrics_port) == (8081, 9090)
    assert config.liveness_endpoint == "http://0.0.0.0:8081/healthz"


def test_worker_overrides_and_ports() -> None:
    config = OperatorSettings.from_env(
        {
            **BASE,
            "LABELOPS_WORKER_IMAGE": "reg/labelops:9",
            "LABELOPS_WORKER_KAFKA_BOOTSTRAP": "kafka.svc:9092",
            "LABELOPS_WORKER_POSTGRES_HOST": "pg.svc",
            "LABELOPS_HEALTH_PORT": "18081",
            "LABELOPS_METRICS_PORT": "0",
        }
    )
    assert config.worker_image == "reg/labelops:9"
    assert config.kafka_bootstrap_for_workers == "kafka.svc:9092"
    assert config.worker_postgres_host == "pg.svc"
    assert (config.health_port, config.metrics_port) == (18081, 0)


@pytest.mark.parametrize("missing", sorted(BASE))
def test_a_missing_backend_names_the_variable(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        OperatorSettings.from_env(env)


def test_a_bad_port_names_the_variable_and_value() -> None:
    with pytest.raises(ConfigError, match=r"LABELOPS_HEALTH_PORT='http' is not a TCP port"):
        OperatorSettings.from_env({**BASE, "LABELOPS_HEALTH_PORT": "http"})
