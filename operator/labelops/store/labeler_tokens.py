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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

DIGEST_BYTES = 32


def token_digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


@dataclass(frozen=True)
class TokenDigests:
    """The digests as of one revision: labeler id -> SHA-256 of the labeler's token."""

    revision: int
    by_labeler: Mapping[str, bytes]


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


def _stored(cur: psycopg.Cursor[Any], schema: str) -> dict[str, bytes]:
    cur.execute(
        sql.SQL("SELECT labeler, token_sha256 FROM {}").format(
            sql.Identifier(schema, "labeler_tokens")
        )
    )
    return {labeler: bytes(digest) for labeler, digest in cur.fetchall()}


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
        # Taken first: concurrent writers (the operator's Secret watch and its reconcile
        # pass, two operator replicas during a rollout) apply their changes one after the
        # other instead of deadlocking on the digests' unique index.
        cur.execute(
            sql.SQL("SELECT revision FROM {} FOR UPDATE").format(
                sql.Identifier(schema, "labeler_tokens_revision")
            )
        )
        changes = token_changes(_stored(cur, schema), desired)
        if changes.empty:
            return changes
        # Deleted before the inserts: two labelers may have swapped tokens.
        gone = [*changes.changed, *changes.removed]
        if gone:
            cur.execute(sql.SQL("DELETE FROM {} WHERE labeler = ANY(%s)").format(table), (gone,))
        cur.executemany(
            sql.SQL("INSERT INTO {} (labeler, token_sha256) VALUES (%s, %s)").format(table),
            [(labeler, desired[labeler]) for labeler in (*changes.added, *changes.changed)],
        )
        cur.execute(
            sql.SQL("UPDATE {} SET revision = revision + 1").format(
                sql.Identifier(schema, "labeler_tokens_revision")
            )
        )
    return changes


def read_token_digests(
    conn: psycopg.Connection[Any], schema: str, known_revision: int | None
) -> TokenDigests | None:
    """The digests, or None when the revision is still `known_revision` (nothing to reload).

    One round trip either way: the digests come along only when the revision moved.
    """
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT r.revision, t.labeler, t.token_sha256 FROM {} r "
                "LEFT JOIN {} t ON r.revision IS DISTINCT FROM %s"
            ).format(
                sql.Identifier(schema, "labeler_tokens_revision"),
                sql.Identifier(schema, "labeler_tokens"),
            ),
            (known_revision,),
        )
        rows = cur.fetchall()
    revision = rows[0][0]
    if revision == known_revision:
        return None
    return TokenDigests(
        revision,
        {labeler: bytes(digest) for _, labeler, digest in rows if labeler is not None},
    )
