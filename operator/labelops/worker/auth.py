"""Bearer-token authentication of labelers (RFC 6750).

Tokens are never logged and never compared byte by byte with an early exit. A presented token
is reduced to its SHA-256 digest; the digest's first bytes select the candidate labeler in
O(1) (a selector), and hmac.compare_digest checks the whole digest in constant time (the
verifier). Timing can reveal something about a digest's prefix at most, which does not help
anyone guess a token, and a campaign with thousands of labelers costs no more per request.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

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


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class BearerAuth:
    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._by_selector: dict[bytes, tuple[bytes, str]] = {}
        for labeler, token in tokens.items():
            digest = _digest(token.encode())
            clash = self._by_selector.get(digest[:SELECTOR_BYTES])
            if clash is not None:
                raise ValueError(f"labelers {clash[1]!r} and {labeler!r} share a token")
            self._by_selector[digest[:SELECTOR_BYTES]] = (digest, labeler)

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
        presented = _digest(token.encode("latin-1", errors="replace"))
        candidate = self._by_selector.get(presented[:SELECTOR_BYTES])
        if candidate is not None and hmac.compare_digest(candidate[0], presented):
            return candidate[1]
        return AuthFailure("the token is not recognised for this campaign", "invalid_token")
