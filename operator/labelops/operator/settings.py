"""The operator's settings, read once from the environment at start.

Backends are addressed twice: how the operator reaches them, and how workers do. On a
laptop both are the same; in a cluster the operator may use an admin endpoint while pods
use a Service name, hence the LABELOPS_WORKER_* overrides.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from labelops.api.campaign import DEFAULT_WORKER_IMAGE


class ConfigError(ValueError):
    """The environment does not describe a runnable operator; the message names the variable."""


@dataclass(frozen=True)
class OperatorSettings:
    kafka_bootstrap: str
    postgres_dsn: str
    worker_image: str = DEFAULT_WORKER_IMAGE
    worker_kafka_bootstrap: str | None = None
    worker_postgres_host: str | None = None
    health_port: int = 8081
    metrics_port: int = 9090
    kafka_timeout_seconds: float = 5.0
    postgres_timeout_seconds: float = 5.0

    @property
    def kafka_bootstrap_for_workers(self) -> str:
        return self.worker_kafka_bootstrap or self.kafka_bootstrap

    @property
    def liveness_endpoint(self) -> str:
        return f"http://0.0.0.0:{self.health_port}/healthz"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if env is None else env

        def required(key: str) -> str:
            value = env.get(key, "").strip()
            if not value:
                raise ConfigError(f"{key} is not set: the operator needs it to provision campaigns")
            return value

        def port(key: str, default: int) -> int:
            raw = env.get(key, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or not 0 <= int(raw) <= 65535:
                raise ConfigError(f"{key}={raw!r} is not a TCP port (0-65535)")
            return int(raw)

        return cls(
            kafka_bootstrap=required("LABELOPS_KAFKA_BOOTSTRAP"),
            postgres_dsn=required("LABELOPS_POSTGRES_DSN"),
            worker_image=env.get("LABELOPS_WORKER_IMAGE", "").strip() or DEFAULT_WORKER_IMAGE,
            worker_kafka_bootstrap=env.get("LABELOPS_WORKER_KAFKA_BOOTSTRAP", "").strip() or None,
            worker_postgres_host=env.get("LABELOPS_WORKER_POSTGRES_HOST", "").strip() or None,
            health_port=port("LABELOPS_HEALTH_PORT", cls.health_port),
            metrics_port=port("LABELOPS_METRICS_PORT", cls.metrics_port),
        )
