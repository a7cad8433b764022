"""How every Kafka client of labelops reaches the broker: one set of variables, one reading.

The worker, the learner, the operator's admin client, the dev stack, the demo, the tests and
the benchmarks all start their librdkafka settings from `KafkaConnection.client_config()`:

    LABELOPS_KAFKA_BOOTSTRAP           host:port[,host:port...] (required)
    LABELOPS_KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL
    LABELOPS_KAFKA_SASL_MECHANISM      SCRAM-SHA-512 (default with SASL), SCRAM-SHA-256, PLAIN
    LABELOPS_KAFKA_SASL_USERNAME       required with SASL
    LABELOPS_KAFKA_SASL_PASSWORD       required with SASL; never echoed in an error
    LABELOPS_KAFKA_SSL_CA_LOCATION     a CA file for SSL and SASL_SSL (default: the system's)
    LABELOPS_KAFKA_SSL_CA_PEM          the CA itself (what the operator writes into the
                                       Secrets of campaign pods, which have no CA file)

Absent security variables mean PLAINTEXT, as a broker without authentication needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from labelops.api.environment import ConfigError, required

ENV_BOOTSTRAP = "LABELOPS_KAFKA_BOOTSTRAP"
ENV_SECURITY_PROTOCOL = "LABELOPS_KAFKA_SECURITY_PROTOCOL"
ENV_SASL_MECHANISM = "LABELOPS_KAFKA_SASL_MECHANISM"
ENV_SASL_USERNAME = "LABELOPS_KAFKA_SASL_USERNAME"
ENV_SASL_PASSWORD = "LABELOPS_KAFKA_SASL_PASSWORD"
ENV_SSL_CA_LOCATION = "LABELOPS_KAFKA_SSL_CA_LOCATION"
ENV_SSL_CA_PEM = "LABELOPS_KAFKA_SSL_CA_PEM"

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
DEFAULT_SASL_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class KafkaConnection:
    """A broker address and the credentials one client presents to it."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None
    ssl_ca_pem: str | None = field(default=None, repr=False)

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_scram(self) -> bool:
        return self.uses_sasl and self.sasl_mechanism in SCRAM_MECHANISMS

    def client_config(self, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """librdkafka settings: the client's own, then the broker's address and this
        connection's security (which a client's settings never override)."""
        return {**(settings or {}), **self._security(), "bootstrap.servers": self.bootstrap}

    def _security(self) -> dict[str, str]:
        values = {
            # PLAINTEXT is librdkafka's default: left out, a PLAINTEXT config reads as before.
            "security.protocol": None
            if self.security_protocol == "PLAINTEXT"
            else self.security_protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.username,
            "sasl.password": self.password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.ca.pem": self.ssl_ca_pem,
        }
        return {key: value for key, value in values.items() if value}

    def as_user(self, username: str, password: str) -> KafkaConnection:
        """The same broker, protocol and mechanism with other SCRAM credentials."""
        return replace(self, username=username, password=password)

    def with_bootstrap(self, bootstrap: str) -> KafkaConnection:
        return replace(self, bootstrap=bootstrap)

    def security_env(self) -> dict[str, str]:
        """The LABELOPS_KAFKA_* security variables that give a process these credentials
        (for a Secret loaded with envFrom); the CA as PEM, since pods have no CA file."""
        values = {
            ENV_SECURITY_PROTOCOL: self.security_protocol,
            ENV_SASL_MECHANISM: self.sasl_mechanism,
            ENV_SASL_USERNAME: self.username,
            ENV_SASL_PASSWORD: self.password,
            ENV_SSL_CA_PEM: self.ssl_ca_pem,
        }
        return {key: value for key, value in values.items() if value}


def _optional(environ: Mapping[str, str], variable: str) -> str | None:
    return environ.get(variable, "").strip() or None


def _choice(environ: Mapping[str, str], variable: str, allowed: tuple[str, ...]) -> str | None:
    value = _optional(environ, variable)
    if value is not None and value.upper() not in allowed:
        raise ConfigError(f"{variable}={value!r} is not allowed: choose from {', '.join(allowed)}")
    return value.upper() if value is not None else None


def connection_from_env(environ: Mapping[str, str]) -> KafkaConnection:
    """The connection the LABELOPS_KAFKA_* variables describe; errors name the variable."""
    bootstrap = required(environ, ENV_BOOTSTRAP, "host:port[,host:port...]")
    protocol = _choice(environ, ENV_SECURITY_PROTOCOL, SECURITY_PROTOCOLS) or "PLAINTEXT"
    mechanism = _choice(environ, ENV_SASL_MECHANISM, SASL_MECHANISMS)
    username = _optional(environ, ENV_SASL_USERNAME)
    password = _optional(environ, ENV_SASL_PASSWORD)
    if protocol.startswith("SASL_"):
        for variable, value in ((ENV_SASL_USERNAME, username), (ENV_SASL_PASSWORD, password)):
            if value is None:
                raise ConfigError(
                    f"{variable} is not set: {ENV_SECURITY_PROTOCOL}={protocol} needs a SASL "
                    "user name and password"
                )
        mechanism = mechanism or DEFAULT_SASL_MECHANISM
    elif mechanism or username or password:
        raise ConfigError(
            f"{ENV_SASL_MECHANISM}, {ENV_SASL_USERNAME} and {ENV_SASL_PASSWORD} need "
            f"{ENV_SECURITY_PROTOCOL} SASL_PLAINTEXT or SASL_SSL (it is {protocol})"
        )
    return KafkaConnection(
        bootstrap=bootstrap,
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        username=username,
        password=password,
        ssl_ca_location=_optional(environ, ENV_SSL_CA_LOCATION),
        ssl_ca_pem=_optional(environ, ENV_SSL_CA_PEM),
    )
