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

Network isolation of campaign pods: LABELOPS_NETWORK_POLICIES (true by default: each
campaign gets NetworkPolicies for its worker and learner pods) and
LABELOPS_NETWORK_POLICY_PEERS (JSON, see network_policy.NetworkPolicyPeers).

Kafka security: the LABELOPS_KAFKA_* variables every client reads (api/kafka_connection.py).
With SASL/SCRAM the operator is a super user and gives each campaign its own users and ACLs;
LABELOPS_KAFKA_SSL_CA_LOCATION's CA is handed to campaign pods in their Kafka Secrets.

Which namespaces the operator serves comes from `labelops operator --namespace` (repeatable;
none: all), checked by watch_namespaces: exact names only, since a namespaced install grants a
Role per listed namespace and RBAC has no wildcard namespaces.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from labelops.api.campaign import DEFAULT_WORKER_IMAGE
from labelops.api.environment import ConfigError as EnvironmentConfigError
from labelops.api.kafka_connection import KafkaConnection, connection_from_env
from labelops.operator.network_policy import NetworkPolicyPeers, PeersError, parse_peers

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class ConfigError(ValueError):
    """The environment does not describe a runnable operator; the message names the variable."""


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def watch_namespaces(names: Iterable[str]) -> tuple[str, ...]:
    """The namespaces to serve, deduplicated in order; empty means cluster-wide."""
    found: list[str] = []
    for name in names:
        if not _NAMESPACE.fullmatch(name):
            raise ConfigError(
                f"--namespace {name!r} is not a namespace name (lowercase letters, digits and "
                "'-', at most 63; no patterns: each namespace needs its own Role)"
            )
        if name not in found:
            found.append(name)
    return tuple(found)


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
    network_policies: bool = True
    network_policy_peers: NetworkPolicyPeers = field(default_factory=NetworkPolicyPeers)
    # The operator's own Kafka credentials (LABELOPS_KAFKA_*, see api/kafka_connection.py);
    # None: PLAINTEXT to kafka_bootstrap. With SASL/SCRAM, campaigns get users and ACLs.
    kafka: KafkaConnection | None = None

    @property
    def kafka_bootstrap_for_workers(self) -> str:
        return self.worker_kafka_bootstrap or self.kafka_bootstrap

    @property
    def kafka_connection(self) -> KafkaConnection:
        return self.kafka or KafkaConnection(self.kafka_bootstrap)

    @property
    def campaign_kafka_access(self) -> KafkaConnection | None:
        """How campaign pods reach Kafka as their own SCRAM users (kafka_access.py), without
        a user yet; None when the operator's broker does not authenticate with SCRAM."""
        own = self.kafka_connection
        if not own.uses_scram:
            return None
        ca_pem = own.ssl_ca_pem
        if own.ssl_ca_location and not ca_pem:
            try:
                ca_pem = Path(own.ssl_ca_location).read_text()
            except OSError as err:
                raise ConfigError(
                    f"LABELOPS_KAFKA_SSL_CA_LOCATION {own.ssl_ca_location!r} cannot be read: "
                    f"{err.strerror}"
                ) from None
        return KafkaConnection(
            bootstrap=self.kafka_bootstrap_for_workers,
            security_protocol=own.security_protocol,
            sasl_mechanism=own.sasl_mechanism,
            ssl_ca_pem=ca_pem,
        )

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
        enabled = env.get("LABELOPS_NETWORK_POLICIES", "").strip().lower() or "true"
        if enabled not in _BOOLEANS:
            raise ConfigError(f"LABELOPS_NETWORK_POLICIES={enabled!r} is not true or false")
        try:
            peers = parse_peers(
                env.get("LABELOPS_NETWORK_POLICY_PEERS", "").strip(),
                "LABELOPS_NETWORK_POLICY_PEERS",
            )
        except PeersError as err:
            raise ConfigError(str(err)) from None
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
            network_policies=_BOOLEANS[enabled],
            network_policy_peers=peers,
            kafka=_kafka_connection(env),
        )


def _kafka_connection(env: Mapping[str, str]) -> KafkaConnection:
    try:
        return connection_from_env(env)
    except EnvironmentConfigError as err:
        raise ConfigError(str(err)) from None
