"""Single sign-on: an identity provider's bearer JWT verified into an Identity, or refused
with a reason.

The issuer's discovery document (<issuer>/.well-known/openid-configuration, whose `issuer`
must be the configured one exactly) names its JWKS; PyJWT's PyJWKClient fetches and caches the
keys and refetches once when a token names a key id it does not hold (the provider rotated
its keys), at most once per cooldown so unknown key ids cannot make it hammer the provider.

Only asymmetric algorithms are accepted, RS256 and ES256, fixed here and never taken from the
token: `none` would need no signature, and HS256 would let anyone holding the public key
(everyone) sign with it as a shared secret. The key's own algorithm must be the token's.
Expiry and not-before are checked with a small leeway for clock skew; `exp`, `iss` and `aud`
are required.

Blocking I/O (urllib) on a cache miss only: the async callers run `verify` in a thread.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import urllib.request
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.error import URLError
from urllib.parse import urlparse

import jwt

ALLOWED_ALGORITHMS = ("RS256", "ES256")
DEFAULT_LEEWAY_SECONDS = 30.0
DISCOVERY_PATH = "/.well-known/openid-configuration"


@dataclass(frozen=True)
class Identity:
    labeler: str
    groups: tuple[str, ...]
    issuer: str


class Refusal(StrEnum):
    MALFORMED = "malformed-token"
    ALGORITHM_NOT_ALLOWED = "algorithm-not-allowed"
    UNKNOWN_KEY = "unknown-key"
    BAD_SIGNATURE = "bad-signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    WRONG_ISSUER = "wrong-issuer"
    WRONG_AUDIENCE = "wrong-audience"
    MISSING_CLAIM = "missing-claim"
    ISSUER_UNAVAILABLE = "issuer-unavailable"

    @property
    def http_status(self) -> int:
        """401 for the token's fault; 503 when the keys could not be fetched (retry)."""
        return 503 if self is Refusal.ISSUER_UNAVAILABLE else 401


class TokenRefused(Exception):
    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secure_url_problem(url: str, field: str) -> str | None:
    """Keys fetched over plain http could be anyone's: https, or http on loopback only."""
    parsed = urlparse(url)
    if parsed.scheme == "https" and parsed.hostname:
        return None
    if parsed.scheme == "http" and _is_loopback(parsed.hostname):
        return None
    return f"{field} {url!r} must be an https URL (plain http only on loopback)"


_DECODE_REFUSALS: tuple[tuple[type[jwt.PyJWTError], Refusal], ...] = (
    (jwt.ExpiredSignatureError, Refusal.EXPIRED),
    (jwt.ImmatureSignatureError, Refusal.NOT_YET_VALID),
    (jwt.InvalidAudienceError, Refusal.WRONG_AUDIENCE),
    (jwt.InvalidIssuerError, Refusal.WRONG_ISSUER),
    (jwt.InvalidSignatureError, Refusal.BAD_SIGNATURE),
    (jwt.MissingRequiredClaimError, Refusal.MISSING_CLAIM),
    (jwt.InvalidAlgorithmError, Refusal.ALGORITHM_NOT_ALLOWED),
)


class OidcVerifier:
    """Verifies one issuer's tokens for one audience (a LabelerPool's spec.identity.oidc)."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        username_claim: str = "sub",
        groups_claim: str = "groups",
        leeway_seconds: float = DEFAULT_LEEWAY_SECONDS,
        http_timeout_seconds: float = 5.0,
        jwks_lifespan_seconds: float = 300.0,
        refetch_cooldown_seconds: float = 30.0,
    ) -> None:
        problem = secure_url_problem(issuer, "identity.oidc.issuer")
        if problem:
            raise ValueError(problem)
        self.issuer = issuer
        self.audience = audience
        self.username_claim = username_claim
        self.groups_claim = groups_claim
        self.leeway_seconds = leeway_seconds
        self._timeout = http_timeout_seconds
        self._lifespan = jwks_lifespan_seconds
        self._cooldown = refetch_cooldown_seconds
        self._lock = threading.Lock()
        self._keys: jwt.PyJWKClient | None = None

    def verify(self, token: str) -> Identity:
        """The token's identity.

        :raises TokenRefused: with the reason (Refusal) and a detail naming what was wrong.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as err:
            raise TokenRefused(Refusal.MALFORMED, f"not a JWT: {err}") from err
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise TokenRefused(
                Refusal.ALGORITHM_NOT_ALLOWED,
                f"alg {algorithm!r} is not allowed; allowed: {', '.join(ALLOWED_ALGORITHMS)}",
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRefused(Refusal.UNKNOWN_KEY, "the token names no key id (kid)")
        key = self._signing_key(kid)
        if key.algorithm_name != algorithm:
            raise TokenRefused(
                Refusal.ALGORITHM_NOT_ALLOWED,
                f"key {kid!r} is a {key.algorithm_name} key, the token says alg {algorithm!r}",
            )
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as err:
            for error, reason in _DECODE_REFUSALS:
                if isinstance(err, error):
                    raise TokenRefused(reason, str(err)) from err
            raise TokenRefused(Refusal.MALFORMED, str(err)) from err
        return Identity(self._username(claims), self._groups(claims), self.issuer)

    def _username(self, claims: dict[str, Any]) -> str:
        value = claims.get(self.username_claim)
        if not isinstance(value, str) or not value:
            raise TokenRefused(
                Refusal.MISSING_CLAIM,
                f"claim {self.username_claim!r} (identity.oidc.usernameClaim) must be a "
                f"non-empty string, got {value!r}",
            )
        return value

    def _groups(self, claims: dict[str, Any]) -> tuple[str, ...]:
        value = claims.get(self.groups_claim, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
            raise TokenRefused(
                Refusal.MALFORMED,
                f"claim {self.groups_claim!r} (identity.oidc.groupsClaim) must be a list of "
                f"strings, got {value!r}",
            )
        return tuple(value)

    def _signing_key(self, kid: str) -> jwt.PyJWK:
        keys = self._key_client()
        try:
            return keys.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as err:
            raise TokenRefused(Refusal.ISSUER_UNAVAILABLE, str(err)) from err
        except jwt.PyJWKClientError as err:
            raise TokenRefused(
                Refusal.UNKNOWN_KEY, f"key id {kid!r} is not in the issuer's JWKS ({err})"
            ) from err

    def _key_client(self) -> jwt.PyJWKClient:
        """The JWKS client, after discovery (retried on every call until it succeeds)."""
        with self._lock:
            if self._keys is None:
                self._keys = jwt.PyJWKClient(
                    self._discover_jwks_uri(),
                    cache_jwk_set=True,
                    lifespan=self._lifespan,
                    timeout=self._timeout,
                    cooldown_duration=self._cooldown,
                )
            return self._keys

    def _discover_jwks_uri(self) -> str:
        url = self.issuer.rstrip("/") + DISCOVERY_PATH
        try:
            with urllib.request.urlopen(url, timeout=self._timeout) as response:
                document = json.load(response)
        except (URLError, TimeoutError, OSError, ValueError) as err:
            raise TokenRefused(
                Refusal.ISSUER_UNAVAILABLE, f"discovery at {url} failed: {err}"
            ) from err
        if not isinstance(document, dict) or document.get("issuer") != self.issuer:
            found = document.get("issuer") if isinstance(document, dict) else document
            raise TokenRefused(
                Refusal.ISSUER_UNAVAILABLE,
                f"discovery at {url} names issuer {found!r}, not {self.issuer!r}",
            )
        jwks_uri = document.get("jwks_uri")
        problem = (
            "names no jwks_uri"
            if not isinstance(jwks_uri, str)
            else secure_url_problem(jwks_uri, "jwks_uri")
        )
        if problem or not isinstance(jwks_uri, str):
            raise TokenRefused(Refusal.ISSUER_UNAVAILABLE, f"discovery at {url}: {problem}")
        return jwks_uri
