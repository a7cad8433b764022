"""The router's sign-in of tokens-pool labelers and its OIDC cache horizon (router/identity.py)."""

from __future__ import annotations

import asyncio

import pytest

from labelops.router.identity import (
    CACHE_SECONDS,
    NotSignedIn,
    SignedIn,
    TokenIdentities,
    bearer_token,
    trusted_until,
)
from labelops.store.labeler_tokens import token_digest


def _identities() -> TokenIdentities:
    return TokenIdentities({"ann": token_digest(b"ann-secret"), "bob": token_digest(b"bob-secret")})


def test_a_pool_token_signs_its_labeler_in() -> None:
    assert asyncio.run(_identities().sign_in("bob-secret")) == SignedIn("bob")


def test_an_unknown_token_is_refused_with_a_reason() -> None:
    refused = asyncio.run(_identities().sign_in("bob-secre"))
    assert isinstance(refused, NotSignedIn)
    assert (refused.status, refused.reason) == (401, "unknown-token")
    assert 'error="invalid_token"' in refused.www_authenticate
    assert 'error_description="unknown-token"' in refused.www_authenticate


def test_two_labelers_sharing_a_token_is_an_error_naming_both() -> None:
    with pytest.raises(ValueError, match="'ann' and 'bob' share a token"):
        TokenIdentities({"ann": token_digest(b"same"), "bob": token_digest(b"same")})


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer"])
def test_missing_or_malformed_authorization_is_refused(header: str | None) -> None:
    refused = bearer_token(header)
    assert isinstance(refused, NotSignedIn)
    assert (refused.status, refused.reason) == (401, "missing-credentials")
    assert 'error="invalid_request"' in refused.www_authenticate


def test_the_bearer_token_is_taken_from_the_header() -> None:
    assert bearer_token("bearer  tok-1 ") == "tok-1"


def test_a_verified_jwt_is_trusted_until_exp_but_never_past_the_cache_horizon() -> None:
    assert trusted_until(exp=1_000.0 + 60, now=1_000.0) == 1_060.0
    assert trusted_until(exp=1_000.0 + 86_400, now=1_000.0) == 1_000.0 + CACHE_SECONDS
