"""Signing a pool's labelers in at the router: a bearer token of the pool's tokens Secret
(its SHA-256 digest, selected by its first bytes and compared in constant time, as the
worker does) or an OIDC JWT of the pool's issuer (verified in a thread, since a key fetch
blocks, and cached by the token's digest until its `exp`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from labelops.api.pool_router import ENV_LABELER_DIGESTS
from labelops.identity.oidc import OidcVerifier, Refusal, TokenRefused
from labelops.store.labeler_tokens import find_token, index_digests, token_digest

REALM = "labelops"
# Verified JWTs kept at most: past this, expired ones are dropped first, then the oldest.
MAX_CACHED_TOKENS = 50_000
# A verified JWT is trusted at most this long without verifying it again (as the worker's
# worker/oidc_auth.CACHE_SECONDS, the JWKS cache's lifespan): a key the issuer retired stops
# being trusted within it, whatever the token's exp says.
CACHE_SECONDS = 300.0


@dataclass(frozen=True)
class SignedIn:
    labeler: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotSignedIn:
    status: int  # 401, or 503 when the issuer could not be reached
    reason: str
    detail: str

    @property
    def www_authenticate(self) -> str:
        error = "invalid_request" if self.reason == "missing-credentials" else "invalid_token"
        return f'Bearer realm="{REALM}", error="{error}", error_description="{self.reason}"'


def bearer_token(authorization: str | None) -> str | NotSignedIn:
    if not authorization:
        return NotSignedIn(
            401,
            "missing-credentials",
            "missing credentials: send 'Authorization: Bearer <your token>'",
        )
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return NotSignedIn(
            401,
            "missing-credentials",
            "malformed Authorization header: expected 'Bearer <your token>'",
        )
    return token


class TokenIdentities:
    """labeler id -> SHA-256 digest of their token (LABELOPS_LABELER_DIGESTS)."""

    def __init__(self, digests: Mapping[str, bytes]) -> None:
        self._by_selector = index_digests(digests, {}, str, repr, ENV_LABELER_DIGESTS)

    async def sign_in(self, token: str) -> SignedIn | NotSignedIn:
        labeler = find_token(self._by_selector, token.encode("utf-8", errors="replace"))
        if labeler is not None:
            return SignedIn(labeler)
        return NotSignedIn(401, "unknown-token", "the token is not one of this pool's labelers")


def trusted_until(exp: float, now: float) -> float:
    """Until when (wall clock) a JWT verified at `now` and expiring at `exp` stays cached."""
    return min(exp, now + CACHE_SECONDS)


class OidcIdentities:
    def __init__(self, verifier: OidcVerifier) -> None:
        self._verifier = verifier
        self._cache: dict[bytes, tuple[SignedIn, float]] = {}

    async def sign_in(self, token: str) -> SignedIn | NotSignedIn:
        key = token_digest(token.encode("utf-8", errors="replace"))
        now = time.time()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        loop = asyncio.get_running_loop()
        try:
            identity = await loop.run_in_executor(None, self._verifier.verify, token)
        except TokenRefused as refused:
            return NotSignedIn(refused.reason.http_status, refused.reason.value, refused.detail)
        exp = float(jwt.decode(token, options={"verify_signature": False})["exp"])
        expires = trusted_until(exp, now)
        if len(self._cache) >= MAX_CACHED_TOKENS:
            self._evict(now)
        signed_in = SignedIn(identity.labeler, identity.groups)
        self._cache[key] = (signed_in, expires)
        return signed_in

    def _evict(self, now: float) -> None:
        for key in [k for k, (_, until) in self._cache.items() if until <= now]:
            del self._cache[key]
        while len(self._cache) >= MAX_CACHED_TOKENS:
            del self._cache[next(iter(self._cache))]


Identities = TokenIdentities | OidcIdentities

__all__ = [
    "Identities",
    "NotSignedIn",
    "OidcIdentities",
    "Refusal",
    "SignedIn",
    "TokenIdentities",
    "trusted_until",
]
