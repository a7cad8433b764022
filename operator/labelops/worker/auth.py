"""Bearer-token authentication of labelers (RFC 6750), with tokens that change while running.

Where the tokens come from: the campaign's schema keeps their SHA-256 digests, written by the
operator from the campaign's tokens Secret (store/labeler_tokens.py). Every worker process
polls them every REFRESH_SECONDS (TokenRefresh), so a changed or removed token is refused
within seconds of the operator's write, without a restart, and the worker never holds a
plaintext token of the campaign. A worker run by hand (no operator, tests, benchmarks) may
also be given fixed tokens in its environment (LABELOPS_TOKEN_<labeler id>).

Tokens are never logged and never compared byte by byte with an early exit. A presented token
is reduced to its SHA-256 digest; the digest's first bytes select the candidate labeler in
O(1) (a selector), and hmac.compare_digest checks the whole digest in constant time (the
verifier). Timing can reveal something about a digest's prefix at most, which does not help
anyone guess a token, and a campaign with thousands of labelers costs no more per request.

Besides labelers, a token may be a service's: a LabelerPool's router (service "router"),
whose digest the operator keeps beside the labelers' (migration 0005). The router acts on
behalf of the labeler it names in the Labelops-Labeler header (acting_labeler); that header
from anyone else, or a service request without it, is refused (400). A pool campaign's
workers also accept the pool's OIDC JWTs (worker/oidc_auth.py), and refuse (403) a labeler
signing in directly who lacks a skill the campaign requires (the router checks those itself).
See docs/worker-identity.md.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from labelops.api.labeler_pool import Skill
from labelops.api.pool_router import ON_BEHALF_OF_HEADER
from labelops.identity.oidc import OidcVerifier, Refusal, TokenRefused
from labelops.store.labeler_tokens import (
    TokenDigests,
    find_token,
    index_digests,
    read_token_digests,
    token_digest,
)
from labelops.worker.config import WorkerSettings
from labelops.worker.oidc_auth import OidcAuth, RunBlocking, looks_like_jwt, missing_skills

log = logging.getLogger("labelops.worker")

REALM = "labelops"


# Labeler ids are Secret keys (tokens Secret), identity-provider usernames (often e-mail
# addresses) and entries of spec.labelers.blocked / skills[].members (253 characters at
# most): visible ASCII, no spaces, 1 to 253 characters.
LABELER_ID_MAX = 253
_LABELER_ID = re.compile(rf"^[\x21-\x7e]{{1,{LABELER_ID_MAX}}}$")
LABELER_ID_RULE = (
    f"1 to {LABELER_ID_MAX} visible ASCII characters (no spaces or control characters)"
)

# Seconds a client waits before retrying when the identity provider cannot be reached.
ISSUER_RETRY_SECONDS = 5


def labeler_id_problem(value: str) -> str | None:
    """Why `value` cannot be a labeler id, or None."""
    if _LABELER_ID.match(value):
        return None
    return f"{value[:300]!r} is not a labeler id: allowed {LABELER_ID_RULE}"


@dataclass(frozen=True)
class Service:
    """A service's credential (a pool's router): it names the labeler it acts for."""

    name: str


# A labeler (their id) or a service.
Principal = str | Service


@dataclass(frozen=True)
class AuthFailure:
    """Why a request was not authenticated (401), not allowed (403, 400) or cannot be checked
    now (503), in words a labeler can act on."""

    detail: str
    error: str | None  # RFC 6750 error code; None when no credentials were sent at all
    status: int = 401
    kind: str = "unauthorized"  # the problem type (problem_details.py)
    reason: str | None = None  # machine-readable cause, e.g. an OIDC Refusal
    extensions: Mapping[str, Any] = field(default_factory=dict)

    @property
    def www_authenticate(self) -> str:
        if self.error is None:
            return f'Bearer realm="{REALM}"'
        return f'Bearer realm="{REALM}", error="{self.error}"'

    @property
    def headers(self) -> dict[str, str]:
        if self.status == 401:
            return {"WWW-Authenticate": self.www_authenticate}
        if self.status == 503:
            return {"Retry-After": str(ISSUER_RETRY_SECONDS)}
        return {}

    def problem_extensions(self) -> dict[str, Any]:
        found: dict[str, Any] = dict(self.extensions)
        if self.reason is not None:
            found["reason"] = self.reason
        if self.status == 503:
            found["retryAfter"] = ISSUER_RETRY_SECONDS
        return found


def _refused_jwt(err: TokenRefused) -> AuthFailure:
    if err.reason is Refusal.ISSUER_UNAVAILABLE:
        return AuthFailure(
            f"the identity provider cannot be reached to check the token ({err.detail}); "
            f"retry in {ISSUER_RETRY_SECONDS} s",
            None,
            status=503,
            kind="issuer-unavailable",
            reason=err.reason.value,
        )
    return AuthFailure(
        f"the token was refused ({err.reason.value}): {err.detail}",
        "invalid_token",
        reason=err.reason.value,
    )


def _lacking(labeler: str, missing: Sequence[str]) -> AuthFailure:
    return AuthFailure(
        f"labeler {labeler!r} lacks the skill{'s' if len(missing) > 1 else ''} this campaign "
        f"requires: {', '.join(missing)} (granted by the pool's skills[].groups or "
        f"skills[].members)",
        None,
        status=403,
        kind="missing-skills",
        reason="missing-skills",
        extensions={"missingSkills": list(missing)},
    )


def acting_labeler(principal: Principal, on_behalf_of: str | None) -> str | AuthFailure:
    """The labeler a request acts for: a labeler's own id, or the one a service names in
    the Labelops-Labeler header (which only a service may send)."""
    if isinstance(principal, Service):
        if on_behalf_of is None or not on_behalf_of.strip():
            return AuthFailure(
                f"header {ON_BEHALF_OF_HEADER} is missing: a request with the "
                f"{principal.name!r} service's token must name the labeler it is for "
                f"({LABELER_ID_RULE})",
                None,
                status=400,
                kind="invalid-request",
                reason="on-behalf-of-missing",
            )
        problem = labeler_id_problem(on_behalf_of.strip())
        if problem:
            return AuthFailure(
                f"header {ON_BEHALF_OF_HEADER}: {problem}",
                None,
                status=400,
                kind="invalid-request",
                reason="on-behalf-of-invalid",
            )
        return on_behalf_of.strip()
    if on_behalf_of is not None:
        return AuthFailure(
            f"header {ON_BEHALF_OF_HEADER} is only for the pool's router: a labeler's request "
            f"acts for that labeler ({principal!r}); send it without the header",
            None,
            status=400,
            kind="invalid-request",
            reason="on-behalf-of-not-allowed",
        )
    return principal


# How often a worker process looks for changed tokens: a changed or removed token is refused
# at most this long (plus the operator's write) after its Secret changed.
REFRESH_SECONDS = 3.0


def _named(principal: Principal) -> str:
    return f"service {principal.name!r}" if isinstance(principal, Service) else repr(principal)


def _index(
    digests: Mapping[str, bytes],
    into: dict[bytes, tuple[bytes, Principal]],
    source: str,
    as_service: bool = False,
) -> dict[bytes, tuple[bytes, Principal]]:
    principal: Callable[[str], Principal] = Service if as_service else str
    return index_digests(digests, into, principal, _named, source)


class BearerAuth:
    """fixed: labeler id -> token, from the environment; the campaign's digests (labelers'
    and services') come and go through replace(). oidc: the pool's identity provider, whose
    JWTs sign labelers in too; required_skills: what a labeler signing in directly must hold.
    """

    def __init__(
        self,
        fixed: Mapping[str, str],
        *,
        oidc: OidcAuth | None = None,
        required_skills: Sequence[Skill] = (),
    ) -> None:
        self._fixed = _index(
            {labeler: token_digest(token.encode()) for labeler, token in fixed.items()},
            {},
            "the environment",
        )
        self._by_selector = self._fixed
        self.revision: int | None = None
        self.labelers = len(self._fixed)
        self.services = 0
        self._oidc = oidc
        self._required = tuple(required_skills)
        # Token labelers' missing skills (their skills come from skills[].members only).
        self._missing: dict[str, tuple[str, ...]] = {}

    def replace(self, digests: TokenDigests) -> None:
        """Serve the campaign's digests of this revision (and the fixed tokens) from now on.

        :raises ValueError: when a digest is a fixed token's of another labeler.
        """
        by_selector = _index(digests.by_labeler, dict(self._fixed), "the campaign's database")
        by_selector = _index(digests.services, by_selector, "the campaign's database", True)
        # One reference assignment: a request sees the old set or the new one, never a mix.
        self._by_selector = by_selector
        self.revision = digests.revision
        self.services = len(digests.services)
        self.labelers = len(by_selector) - self.services
        self._missing = {}

    def authenticate(
        self, authorization: str | None, run_blocking: RunBlocking[Any] | None = None
    ) -> Principal | AuthFailure:
        """The labeler id or the service for an Authorization header value, or why it was
        refused. run_blocking runs an OIDC token's verification (it may fetch the issuer's
        keys) off the event loop; without it, on the calling thread."""
        if not authorization:
            return AuthFailure(
                "missing credentials: send 'Authorization: Bearer <your labeler token>'", None
            )
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return AuthFailure(
                "malformed Authorization header: expected 'Bearer <your labeler token>'",
                "invalid_request",
            )
        # WSGI hands header values over as latin-1 text: recover the bytes the client sent,
        # so a token with non-ASCII characters (UTF-8 on the wire) still matches.
        presented = token.encode("latin-1", errors="replace")
        principal = find_token(self._by_selector, presented)
        if principal is not None:
            if isinstance(principal, Service) or not self._required:
                return principal
            return self._with_skills(principal, ())
        if self._oidc is not None and looks_like_jwt(token):
            return self._sign_in(token, token_digest(presented), run_blocking or _direct)
        return AuthFailure("the token is not recognised for this campaign", "invalid_token")

    def _sign_in(
        self, token: str, digest: bytes, run_blocking: RunBlocking[Any]
    ) -> str | AuthFailure:
        assert self._oidc is not None
        try:
            signed_in = self._oidc.sign_in(token, digest, run_blocking)
        except TokenRefused as err:
            return _refused_jwt(err)
        problem = labeler_id_problem(signed_in.labeler)
        if problem:
            return AuthFailure(
                f"the token was refused ({Refusal.MISSING_CLAIM.value}): claim "
                f"{self._oidc.verifier.username_claim!r}: {problem}",
                "invalid_token",
                reason=Refusal.MISSING_CLAIM.value,
            )
        if not self._required:
            return signed_in.labeler
        return self._with_skills(signed_in.labeler, signed_in.groups)

    def _with_skills(self, labeler: str, groups: tuple[str, ...]) -> str | AuthFailure:
        if groups:
            missing = missing_skills(labeler, groups, self._required)
        else:
            known = self._missing.get(labeler)
            if known is None:
                known = self._missing[labeler] = missing_skills(labeler, (), self._required)
            missing = known
        return _lacking(labeler, missing) if missing else labeler


def _direct(work: Callable[[], Any]) -> Any:
    return work()


def auth_from_settings(settings: WorkerSettings) -> BearerAuth:
    """The worker's authentication: its fixed tokens, the campaign's digests once refreshed,
    and the pool's OIDC issuer and required skills when it has them."""
    oidc = None
    if settings.oidc is not None:
        oidc = OidcAuth(
            OidcVerifier(
                settings.oidc.issuer,
                settings.oidc.audience,
                username_claim=settings.oidc.username_claim,
                groups_claim=settings.oidc.groups_claim,
            )
        )
    return BearerAuth(settings.tokens, oidc=oidc, required_skills=settings.required_skills)


class TokenRefresh:
    """Keeps a BearerAuth's digests those of the campaign's schema, polling every
    REFRESH_SECONDS. The database being out is not a failure: the last digests stay in use
    (the requests that need the database get 503 anyway) and polling goes on."""

    def __init__(self, pool: ConnectionPool, schema: str, auth: BearerAuth) -> None:
        self._pool = pool
        self._schema = schema
        self._auth = auth
        self._failing = False
        self._refused: int | None = None

    def refresh(self) -> bool:
        """One poll; True when it reached the database."""
        try:
            with self._pool.connection() as conn:
                digests = read_token_digests(conn, self._schema, self._auth.revision)
        except (psycopg.Error, PoolTimeout) as err:
            if not self._failing:
                log.warning("labeler tokens not refreshed (keeping the last ones): %s", err)
            self._failing = True
            return False
        if self._failing:
            log.info("labeler tokens: the database answers again")
            self._failing = False
        if digests is not None:
            try:
                self._auth.replace(digests)
            except ValueError as err:
                if self._refused != digests.revision:
                    log.error("labeler tokens of revision %d refused: %s", digests.revision, err)
                self._refused = digests.revision
                return True
            log.info(
                "labeler tokens: revision %d, %d labelers, %d services",
                digests.revision,
                self._auth.labelers,
                self._auth.services,
            )
        return True

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(REFRESH_SECONDS):
            self.refresh()
