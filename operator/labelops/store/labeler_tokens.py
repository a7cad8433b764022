"""Labelers' bearer tokens as a campaign's schema keeps them: SHA-256 digests, never tokens.

The operator reads the campaign's tokens Secret and writes the digests here whenever the
Secret changes (replace_token_digests); every worker process polls the revision every few
seconds and re-reads the digests when it moved (read_token_digests). So a changed or removed
token takes effect within seconds, without a rollout, and the worker pods never see a
plaintext token (there is nothing in their environment or their volumes to leak).

A digest is enough to check a token and useless to present one: tokens are random secrets,
so SHA-256 (no salt, no stretching) cannot be reversed by guessing, and one digest per token
lets a worker find the labeler of a presented token in O(1) (worker/auth.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import sql

DIGEST_BYTES = 32
# A presented token's digest finds its candidate by these first bytes in O(1) (the selector);
# hmac.compare_digest then checks the whole digest in constant time (the verifier).
SELECTOR_BYTES = 8

P = TypeVar("P")
SelectorIndex = dict[bytes, tuple[bytes, P]]


def index_digests(
    digests: Mapping[str, bytes],
    into: SelectorIndex[P],
    principal: Callable[[str], P],
    named: Callable[[P], str],
    source: str,
) -> SelectorIndex[P]:
    """Add name -> digest to a selector index (in place, returned).

    :raises ValueError: when two principals share a token (their selectors clash).
    """
    for name, digest in digests.items():
        who = principal(name)
        clash = into.get(digest[:SELECTOR_BYTES])
        if clash is not None and clash[1] != who:
            raise ValueError(f"{named(clash[1])} and {named(who)} share a token ({source})")
        into[digest[:SELECTOR_BYTES]] = (digest, who)
    return into


def find_token(index: Mapping[bytes, tuple[bytes, P]], token: bytes) -> P | None:
    """The principal whose token this is, or None (constant time in the digest compared)."""
    presented = token_digest(token)
    candidate = index.get(presented[:SELECTOR_BYTES])
    if candidate is not None and hmac.compare_digest(candidate[0], presented):
        return candidate[1]
    return None


def token_digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


@dataclass(frozen=True)
class TokenDigests:
    """The digests as of one revision: labeler id -> SHA-256 of the labeler's token, and
    service name (e.g. a pool's router) -> SHA-256 of that service's token."""

    revision: int
    by_labeler: Mapping[str, bytes]
    services: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenChanges:
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)

    def describe(self) -> str:
        parts = [
            f"{what} {', '.join(labelers)}"
            for what, labelers in (
                ("added", self.added),
                ("changed", self.changed),
                ("removed", self.removed),
            )
            if labelers
        ]
        return "; ".join(parts) or "unchanged"


def token_changes(stored: Mapping[str, bytes], desired: Mapping[str, bytes]) -> TokenChanges:
    """What replace_token_digests has to do to turn the stored digests into the desired."""
    return TokenChanges(
        added=tuple(sorted(set(desired) - set(stored))),
        changed=tuple(sorted(k for k in set(desired) & set(stored) if desired[k] != stored[k])),
        removed=tuple(sorted(set(stored) - set(desired))),
    )


def _stored(
    cur: psycopg.Cursor[Any], schema: str, table: str = "labeler_tokens"
) -> dict[str, bytes]:
    key = "service" if table == "service_tokens" else "labeler"
    cur.execute(
        sql.SQL("SELECT {}, token_sha256 FROM {}").format(
            sql.Identifier(key), sql.Identifier(schema, table)
        )
    )
    return {name: bytes(digest) for name, digest in cur.fetchall()}


def _lock_revision(cur: psycopg.Cursor[Any], schema: str) -> None:
    # Taken first: concurrent writers (the operator's Secret watch and its reconcile
    # pass, two operator replicas during a rollout) apply their changes one after the
    # other instead of deadlocking on the digests' unique index, and the check that no
    # digest is both a labeler's and a service's sees what the other writer committed.
    cur.execute(
        sql.SQL("SELECT revision FROM {} FOR UPDATE").format(
            sql.Identifier(schema, "labeler_tokens_revision")
        )
    )


def _bump_revision(cur: psycopg.Cursor[Any], schema: str) -> None:
    cur.execute(
        sql.SQL("UPDATE {} SET revision = revision + 1").format(
            sql.Identifier(schema, "labeler_tokens_revision")
        )
    )


def _refuse_shared(labelers: Mapping[str, bytes], services: Mapping[str, bytes]) -> None:
    """A digest that is both a labeler's and a service's would let that labeler act as the
    service (and name any labeler in Labelops-Labeler): refused, naming both."""
    by_digest = {digest: labeler for labeler, digest in labelers.items()}
    for service, digest in sorted(services.items()):
        labeler = by_digest.get(digest)
        if labeler is not None:
            raise ValueError(
                f"labeler {labeler!r} and service {service!r} share a token: a service token "
                f"must differ from every labeler token"
            )


def replace_token_digests(
    conn: psycopg.Connection[Any], schema: str, desired: Mapping[str, bytes]
) -> TokenChanges:
    """Make the stored digests exactly `desired` in one transaction, and move the revision
    when anything changed (a write that changes nothing writes nothing).

    :raises ValueError: for a digest of the wrong length or two labelers sharing one.
    """
    for labeler, digest in desired.items():
        if len(digest) != DIGEST_BYTES:
            raise ValueError(f"labeler {labeler!r}: a token digest is {DIGEST_BYTES} bytes")
    if len(set(desired.values())) != len(desired):
        raise ValueError("two labelers share a token")
    table = sql.Identifier(schema, "labeler_tokens")
    with conn.transaction(), conn.cursor() as cur:
        _lock_revision(cur, schema)
        changes = token_changes(_stored(cur, schema), desired)
        if changes.empty:
            return changes
        _refuse_shared(desired, _stored(cur, schema, "service_tokens"))
        # Deleted before the inserts: two labelers may have swapped tokens.
        gone = [*changes.changed, *changes.removed]
        if gone:
            cur.execute(sql.SQL("DELETE FROM {} WHERE labeler = ANY(%s)").format(table), (gone,))
        cur.executemany(
            sql.SQL("INSERT INTO {} (labeler, token_sha256) VALUES (%s, %s)").format(table),
            [(labeler, desired[labeler]) for labeler in (*changes.added, *changes.changed)],
        )
        _bump_revision(cur, schema)
    return changes


def replace_service_digests(
    conn: psycopg.Connection[Any], schema: str, digests: Mapping[str, bytes]
) -> bool:
    """Make the stored service digests exactly `digests` (service name -> SHA-256 of its
    token) in one transaction; True when anything changed, which moves the same revision as
    the labelers' digests so that every worker re-reads both.

    :raises ValueError: for an empty service name, a digest of the wrong length, two
        services sharing one, or a digest that is also a labeler's.
    """
    for service, digest in digests.items():
        if not service:
            raise ValueError("a service name is a non-empty string")
        if len(digest) != DIGEST_BYTES:
            raise ValueError(f"service {service!r}: a token digest is {DIGEST_BYTES} bytes")
    if len(set(digests.values())) != len(digests):
        raise ValueError("two services share a token")
    table = sql.Identifier(schema, "service_tokens")
    with conn.transaction(), conn.cursor() as cur:
        _lock_revision(cur, schema)
        changes = token_changes(_stored(cur, schema, "service_tokens"), digests)
        if changes.empty:
            return False
        _refuse_shared(_stored(cur, schema), digests)
        gone = [*changes.changed, *changes.removed]
        if gone:
            cur.execute(sql.SQL("DELETE FROM {} WHERE service = ANY(%s)").format(table), (gone,))
        cur.executemany(
            sql.SQL("INSERT INTO {} (service, token_sha256) VALUES (%s, %s)").format(table),
            [(service, digests[service]) for service in (*changes.added, *changes.changed)],
        )
        _bump_revision(cur, schema)
    return True


def read_token_digests(
    conn: psycopg.Connection[Any], schema: str, known_revision: int | None
) -> TokenDigests | None:
    """The digests (labelers' and services'), or None when the revision is still
    `known_revision` (nothing to reload).

    One round trip either way: the digests come along only when the revision moved.
    """
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT r.revision, t.kind, t.name, t.token_sha256 FROM {} r "
                "LEFT JOIN (SELECT 'labeler' AS kind, labeler AS name, token_sha256 FROM {} "
                "UNION ALL SELECT 'service', service, token_sha256 FROM {}) t "
                "ON r.revision IS DISTINCT FROM %s"
            ).format(
                sql.Identifier(schema, "labeler_tokens_revision"),
                sql.Identifier(schema, "labeler_tokens"),
                sql.Identifier(schema, "service_tokens"),
            ),
            (known_revision,),
        )
        rows = cur.fetchall()
    revision = rows[0][0]
    if revision == known_revision:
        return None
    return TokenDigests(
        revision,
        {name: bytes(digest) for _, kind, name, digest in rows if kind == "labeler"},
        {name: bytes(digest) for _, kind, name, digest in rows if kind == "service"},
    )
