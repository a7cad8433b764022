"""Labelers signing in to a worker with their identity provider's JWT (a LabelerPool's
spec.identity.oidc, which the operator passes to a pool campaign's workers).

A bearer that looks like a JWT (three dot-separated base64url parts) and is no labeler's or
service's token is verified by identity/oidc.OidcVerifier: signature against the issuer's
JWKS, `iss`, `aud`, `exp`/`nbf`. The labeler id is the username claim, the groups claim
grants skills (routing/skills.skills_of).

Verifying costs a signature check, and a JWKS fetch when the keys are not cached yet or the
token names a new key id: it runs where the worker runs its other blocking work (the store's
thread pool, `run_blocking`), never on the event loop. A verified token is remembered by its
SHA-256 digest until it expires (and at most CACHE_SECONDS, so a key the issuer retired stops
being trusted soon after), so a labeler's every further request costs one dict lookup.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import jwt

from labelops.api.labeler_pool import Skill
from labelops.identity.oidc import Identity, OidcVerifier, Refusal, TokenRefused
from labelops.routing.skills import skills_of

T = TypeVar("T")

RunBlocking = Callable[[Callable[[], T]], T]

_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
# A verified token is trusted at most this long without verifying it again (the JWKS cache's
# lifespan in OidcVerifier): a key the issuer removed stops being trusted within it.
CACHE_SECONDS = 300.0
# Verified tokens remembered at once; when full, expired ones go first, then all of them.
MAX_CACHED = 10_000


def looks_like_jwt(token: str) -> bool:
    return _JWT_SHAPE.match(token) is not None


def missing_skills(
    labeler: str, groups: Sequence[str], required: Sequence[Skill]
) -> tuple[str, ...]:
    """The names of the required skills the labeler does not hold, in the order required."""
    held = skills_of(labeler, groups, required)
    return tuple(skill.name for skill in required if skill.name not in held)


@dataclass(frozen=True)
class SignedIn:
    labeler: str
    groups: tuple[str, ...]
    # time.monotonic() after which the token is verified again (or refused, once expired).
    trusted_until: float


def trusted_until(exp: float, now_wall: float, now_monotonic: float) -> float:
    """Until when (monotonic) a token expiring at `exp` (wall clock) stays cached."""
    return now_monotonic + max(0.0, min(exp - now_wall, CACHE_SECONDS))


class OidcAuth:
    def __init__(
        self,
        verifier: OidcVerifier,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.verifier = verifier
        self._wall = wall
        self._monotonic = monotonic
        self._cache: dict[bytes, SignedIn] = {}

    def cached(self, digest: bytes) -> SignedIn | None:
        signed_in = self._cache.get(digest)
        if signed_in is None:
            return None
        if signed_in.trusted_until <= self._monotonic():
            self._cache.pop(digest, None)
            return None
        return signed_in

    def sign_in(self, token: str, digest: bytes, run_blocking: RunBlocking[Identity]) -> SignedIn:
        """The labeler of a JWT, from the cache or verified (off the event loop).

        :raises TokenRefused: with the reason, as OidcVerifier refused it.
        """
        signed_in = self.cached(digest)
        if signed_in is not None:
            return signed_in
        identity = run_blocking(lambda: self.verifier.verify(token))
        # Verified just now: its claims can be read without checking the signature again.
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
        if not isinstance(exp, int | float):
            raise TokenRefused(Refusal.MISSING_CLAIM, "the token has no numeric exp")
        signed_in = SignedIn(
            identity.labeler,
            identity.groups,
            trusted_until(float(exp), self._wall(), self._monotonic()),
        )
        self._remember(digest, signed_in)
        return signed_in

    def _remember(self, digest: bytes, signed_in: SignedIn) -> None:
        if len(self._cache) >= MAX_CACHED:
            now = self._monotonic()
            for key in [k for k, v in self._cache.items() if v.trusted_until <= now]:
                self._cache.pop(key, None)
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
        self._cache[digest] = signed_in
