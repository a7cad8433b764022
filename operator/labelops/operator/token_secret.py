"""What a campaign's tokens Secret means: labeler id -> SHA-256 of the labeler's token.

The operator turns the Secret into digests and writes them into the campaign's schema (see
store/labeler_tokens.py); the workers follow that table. So the Secret can change at any
time: a key added is a new labeler, a value changed is a rotated token, a key removed (or a
value emptied) is a labeler who can no longer get in, each within seconds and without a
rollout.

Pure: the Secret in, the digests and what is wrong with it out.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labelops.store.labeler_tokens import token_digest


@dataclass(frozen=True)
class TokenSecretReading:
    """digests: the labelers who may get in; problem: what a person must fix, or None."""

    digests: Mapping[str, bytes] = field(default_factory=dict)
    problem: str | None = None


def read_token_secret(namespace: str, secret: Mapping[str, Any]) -> TokenSecretReading:
    """The digests of a tokens Secret's entries.

    An empty value (after trimming the newline a file-made Secret ends in) is a labeler
    without a token: nobody gets in as them. A token held by several labelers lets none of
    them in, since labels would be credited to the wrong one, and is a problem to report.
    """
    name = (secret.get("metadata") or {}).get("name", "?")
    where = f"spec.labelers.tokenSecretRef: Secret {namespace}/{name}"
    tokens: dict[str, bytes] = {}
    for labeler, encoded in sorted((secret.get("data") or {}).items()):
        try:
            token = base64.b64decode(encoded or "", validate=True).strip()
        except (binascii.Error, ValueError):
            return TokenSecretReading(problem=f"{where} key {labeler!r} is not base64")
        if token:
            tokens[labeler] = token
    holders: dict[bytes, list[str]] = {}
    for labeler, token in tokens.items():
        holders.setdefault(token, []).append(labeler)
    shared = [labelers for labelers in holders.values() if len(labelers) > 1]
    digests = {
        labeler: token_digest(token)
        for labeler, token in tokens.items()
        if len(holders[token]) == 1
    }
    if not shared:
        return TokenSecretReading(digests)
    named = "; ".join(", ".join(repr(labeler) for labeler in group) for group in shared)
    return TokenSecretReading(
        digests,
        f"{where}: keys {named} hold the same token, so none of them can sign in; give each "
        "labeler a token of their own",
    )
