"""The router's settings, from the environment its Deployment sets (api/pool_router.py names
the variables). Every error names the variable and what it must hold, never a token."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from labelops.api.environment import ConfigError, integer, required, validation_reasons
from labelops.api.pool_router import (
    ENV_LABELER_DIGESTS,
    ENV_ROUTE_TOKEN_PREFIX,
    ENV_ROUTER_CONFIG,
    ROUTER_PORT,
    RouterConfig,
)
from labelops.identity.oidc import secure_url_problem
from labelops.store.labeler_tokens import DIGEST_BYTES

ENV_HOST = "LABELOPS_ROUTER_HOST"
ENV_PORT = "LABELOPS_ROUTER_PORT"
# Connections kept open to each campaign's workers (the keep-alive pool per campaign).
ENV_CONNECTIONS = "LABELOPS_ROUTER_CONNECTIONS_PER_CAMPAIGN"
ENV_RELAY_IN_FLIGHT = "LABELOPS_ROUTER_RELAY_BATCHES_IN_FLIGHT"


@dataclass(frozen=True)
class RouterSettings:
    config: RouterConfig
    route_tokens: Mapping[str, str]  # campaign -> service token
    labeler_digests: Mapping[str, bytes]  # tokens identity: labeler -> sha256
    host: str
    port: int
    connections_per_campaign: int
    relay_batches_in_flight: int

    def __repr__(self) -> str:  # never print the tokens
        return f"RouterSettings(pool={self.config.pool!r}, port={self.port})"


def settings_from_env(env: Mapping[str, str]) -> RouterSettings:
    raw = required(env, ENV_ROUTER_CONFIG, "the pool's RouterConfig as JSON (api/pool_router.py)")
    config = _router_config(raw)
    tokens = {}
    for campaign in config.campaigns:
        variable = ENV_ROUTE_TOKEN_PREFIX + campaign.name
        tokens[campaign.name] = required(
            env, variable, f"the service token of campaign {campaign.name!r} for its worker"
        )
    digests: dict[str, bytes] = {}
    if config.identity.tokens is not None:
        digests = _digests(
            required(env, ENV_LABELER_DIGESTS, 'the labelers\' token digests: {"id": "<hex>"}')
        )
    return RouterSettings(
        config=config,
        route_tokens=tokens,
        labeler_digests=digests,
        host=env.get(ENV_HOST, "0.0.0.0").strip() or "0.0.0.0",
        port=integer(env, ENV_PORT, ROUTER_PORT, 1, 65535),
        connections_per_campaign=integer(env, ENV_CONNECTIONS, 64, 1, 4096),
        relay_batches_in_flight=integer(env, ENV_RELAY_IN_FLIGHT, 4, 1, 64),
    )


def _router_config(raw: str) -> RouterConfig:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise ConfigError(f"{ENV_ROUTER_CONFIG} is not JSON: {err}") from None
    # The CRD takes https issuers only; the verifier also allows http on loopback (a
    # development identity provider beside the router), so such an issuer is let through.
    loopback = _loopback_issuer(document)
    if loopback is not None:
        document["identity"]["oidc"]["issuer"] = "https://loopback.invalid"
    try:
        config = RouterConfig.model_validate(document)
    except ValidationError as err:
        reasons = validation_reasons(err)
        raise ConfigError(f"{ENV_ROUTER_CONFIG} is not a RouterConfig: {reasons}") from None
    if loopback is not None and config.identity.oidc is not None:
        oidc = config.identity.oidc.model_copy(update={"issuer": loopback})
        identity = config.identity.model_copy(update={"oidc": oidc})
        config = config.model_copy(update={"identity": identity})
    return config


def _loopback_issuer(document: Any) -> str | None:
    try:
        issuer = document["identity"]["oidc"]["issuer"]
    except (KeyError, TypeError):
        return None
    loopback = (
        isinstance(issuer, str)
        and issuer.startswith("http://")
        and secure_url_problem(issuer, "identity.oidc.issuer") is None
    )
    return issuer if loopback else None


def _digests(raw: str) -> dict[str, bytes]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise ConfigError(f"{ENV_LABELER_DIGESTS} is not JSON: {err}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{ENV_LABELER_DIGESTS} must be a JSON object of labeler id -> hex")
    digests = {}
    for labeler, value in document.items():
        try:
            digest = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            digest = b""
        if len(digest) != DIGEST_BYTES:
            raise ConfigError(
                f"{ENV_LABELER_DIGESTS}: labeler {labeler!r} must map to a SHA-256 digest "
                f"({DIGEST_BYTES * 2} hex characters)"
            )
        digests[labeler] = digest
    return digests
