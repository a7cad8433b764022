"""The operator's settings, read once from the environment at start.

Backends are addressed twice: how the operator reaches them, and how workers do. On a
laptop both are the same; in a cluster the operator may use an admin endpoint while pods
use a Service name, hence the LABELOPS_WORKER_* overrides.

Two guards against a confused deputy (whoever may create a campaign must not be able to run
arbitrary code with the operator's reach): LABELOPS_WORKER_IMAGE_ALLOWLIST, the image
repositories campaigns may run as workers (comma separated, `*` globs; the repository of
LABELOPS_WORKER_IMAGE is always allowed, and is the whole list by default).

TLS to PostgreSQL for workers: LABELOPS_POSTGRES_SSLMODE (libpq's sslmode) and
LABELOPS_POSTGRES_SSLROOTCERT (a CA file the operator reads at start and hands to workers
in each campaign's database Secret). Both default to what the admin DSN says.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from labelops.api.campaign import DEFAULT_WORKER_IMAGE

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


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
    # Repository patterns of the images campaigns may run besides worker_image's own.
    worker_image_allowlist: tuple[str, ...] = ()
    postgres_sslmode: str | None = None
    # The CA's PEM text (not a path): workers get it in their database Secret.
    postgres_ca_pem: str | None = None

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

        postgres_dsn = required("LABELOPS_POSTGRES_DSN")
        try:
            admin = conninfo_to_dict(postgres_dsn)
        except Exception:  # psycopg.ProgrammingError, whose text may quote the password
            raise ConfigError("LABELOPS_POSTGRES_DSN is not a libpq connection string") from None
        sslmode = env.get("LABELOPS_POSTGRES_SSLMODE", "").strip() or admin.get("sslmode")
        if sslmode is not None and str(sslmode) not in SSL_MODES:
            raise ConfigError(
                f"LABELOPS_POSTGRES_SSLMODE={sslmode!r} (or the admin DSN's sslmode) is not an "
                f"sslmode: allowed {', '.join(SSL_MODES)}"
            )
        ca_path = env.get("LABELOPS_POSTGRES_SSLROOTCERT", "").strip() or admin.get("sslrootcert")
        ca_pem = None
        if ca_path:
            try:
                ca_pem = Path(str(ca_path)).read_text()
            except OSError as err:
                raise ConfigError(
                    f"LABELOPS_POSTGRES_SSLROOTCERT (or the admin DSN's sslrootcert) "
                    f"{ca_path!r} cannot be read: {err.strerror}"
                ) from None
        allowlist = tuple(
            pattern
            for pattern in env.get("LABELOPS_WORKER_IMAGE_ALLOWLIST", "").replace(",", " ").split()
        )
        return cls(
            kafka_bootstrap=required("LABELOPS_KAFKA_BOOTSTRAP"),
            postgres_dsn=postgres_dsn,
            worker_image=env.get("LABELOPS_WORKER_IMAGE", "").strip() or DEFAULT_WORKER_IMAGE,
            worker_kafka_bootstrap=env.get("LABELOPS_WORKER_KAFKA_BOOTSTRAP", "").strip() or None,
            worker_postgres_host=env.get("LABELOPS_WORKER_POSTGRES_HOST", "").strip() or None,
            health_port=port("LABELOPS_HEALTH_PORT", cls.health_port),
            metrics_port=port("LABELOPS_METRICS_PORT", cls.metrics_port),
            worker_image_allowlist=allowlist,
            postgres_sslmode=str(sslmode) if sslmode else None,
            postgres_ca_pem=ca_pem,
        )
