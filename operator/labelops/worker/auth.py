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
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from labelops.store.labeler_tokens import TokenDigests, read_token_digests, token_digest

log = logging.getLogger("labelops.worker")

REALM = "labelops"


@dataclass(frozen=True)
class AuthFailure:
    """Why a request was not authenticated, in words a labeler can act on."""

    detail: str
    error: str | None  # RFC 6750 error code; None when no credentials were sent at all

    @property
    def www_authenticate(self) -> str:
        if self.error is None:
            return f'Bearer realm="{REALM}"'
        return f'Bearer realm="{REALM}", error="{self.error}"'


SELECTOR_BYTES = 8
# How often a worker process looks for changed tokens: a changed or removed token is refused
# at most this long (plus the operator's write) after its Secret changed.
REFRESH_SECONDS = 3.0


def _index(
    digests: Mapping[str, bytes], into: dict[bytes, tuple[bytes, str]], source: str
) -> dict[bytes, tuple[bytes, str]]:
    for labeler, digest in digests.items():
        clash = into.get(digest[:SELECTOR_BYTES])
        if clash is not None and clash[1] != labeler:
            raise ValueError(f"labelers {clash[1]!r} and {labeler!r} share a token ({source})")
        into[digest[:SELECTOR_BYTES]] = (digest, labeler)
    return into


class BearerAuth:
    """fixed: labeler id -> token, from the environment; the campaign's digests come and go
    through replace()."""

    def __init__(self, fixed: Mapping[str, str]) -> None:
        self._fixed = _index(
            {labeler: token_digest(token.encode()) for labeler, token in fixed.items()},
            {},
            "the environment",
        )
        self._by_selector = self._fixed
        self.revision: int | None = None
        self.labelers = len(self._fixed)

    def replace(self, digests: TokenDigests) -> None:
        """Serve the campaign's digests of this revision (and the fixed tokens) from now on.

        :raises ValueError: when a digest is a fixed token's of another labeler.
        """
        by_selector = _index(digests.by_labeler, dict(self._fixed), "the campaign's database")
        # One reference assignment: a request sees the old set or the new one, never a mix.
        self._by_selector = by_selector
        self.revision = digests.revision
        self.labelers = len(by_selector)

    def authenticate(self, authorization: str | None) -> str | AuthFailure:
        """The labeler id for an Authorization header value, or why it was refused."""
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
        presented = token_digest(token.encode("latin-1", errors="replace"))
        candidate = self._by_selector.get(presented[:SELECTOR_BYTES])
        if candidate is not None and hmac.compare_digest(candidate[0], presented):
            return candidate[1]
        return AuthFailure("the token is not recognised for this campaign", "invalid_token")


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
                "labeler tokens: revision %d, %d labelers", digests.revision, self._auth.labelers
            )
        return True

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(REFRESH_SECONDS):
            self.refresh()
