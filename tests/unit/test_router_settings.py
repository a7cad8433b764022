"""`labelops router`'s environment (router/settings.py): every refusal names the variable."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest

from labelops.api.environment import ConfigError
from labelops.router.identity import SignedIn, TokenIdentities
from labelops.router.settings import settings_from_env


def env(**changes: Any) -> dict[str, str]:
    config = {
        "pool": "crowd",
        "namespace": "ns",
        "identity": {"tokens": {"secretRef": {"name": "t"}}},
        "campaigns": [{"name": "c1", "url": "http://c1-worker:8080"}],
    }
    base = {
        "LABELOPS_ROUTER_CONFIG": json.dumps(config),
        "LABELOPS_ROUTE_TOKEN_c1": "service-token",
        "LABELOPS_LABELER_DIGESTS": json.dumps({"ann": hashlib.sha256(b"t-ann").hexdigest()}),
    }
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def test_a_complete_environment_gives_the_settings_without_showing_tokens() -> None:
    settings = settings_from_env(env())
    assert settings.route_tokens == {"c1": "service-token"}
    assert settings.port == 8080 and "service-token" not in repr(settings)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"LABELOPS_ROUTER_CONFIG": None}, "LABELOPS_ROUTER_CONFIG is not set"),
        ({"LABELOPS_ROUTER_CONFIG": "{"}, "LABELOPS_ROUTER_CONFIG is not JSON"),
        ({"LABELOPS_ROUTER_CONFIG": '{"pool": "p"}'}, "namespace"),
        ({"LABELOPS_ROUTE_TOKEN_c1": None}, "LABELOPS_ROUTE_TOKEN_c1 is not set"),
        ({"LABELOPS_LABELER_DIGESTS": None}, "LABELOPS_LABELER_DIGESTS is not set"),
        ({"LABELOPS_LABELER_DIGESTS": '{"ann": "abc"}'}, "labeler 'ann' must map to a SHA-256"),
        ({"LABELOPS_ROUTER_PORT": "0"}, "LABELOPS_ROUTER_PORT=0 is out of range"),
    ],
)
def test_a_wrong_environment_names_the_variable(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_env(env(**changes))


def test_an_oidc_issuer_on_loopback_http_is_accepted_elsewhere_https_only() -> None:
    config = json.loads(env()["LABELOPS_ROUTER_CONFIG"])
    config["identity"] = {"oidc": {"issuer": "http://127.0.0.1:5556", "audience": "labelops"}}
    settings = settings_from_env(env(LABELOPS_ROUTER_CONFIG=json.dumps(config)))
    assert settings.config.identity.oidc is not None
    assert settings.config.identity.oidc.issuer == "http://127.0.0.1:5556"
    config["identity"]["oidc"]["issuer"] = "http://idp.example.com"
    with pytest.raises(ConfigError, match=r"identity\.oidc\.issuer"):
        settings_from_env(env(LABELOPS_ROUTER_CONFIG=json.dumps(config)))


def test_pool_tokens_sign_in_by_digest() -> None:
    identities = TokenIdentities({"ann": hashlib.sha256(b"t-ann").digest()})
    assert asyncio.run(identities.sign_in("t-ann")) == SignedIn("ann")
    refused = asyncio.run(identities.sign_in("t-bob"))
    assert not isinstance(refused, SignedIn) and refused.status == 401
