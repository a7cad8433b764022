"""The leases a campaign's labelers hold right now, and how many labelers hold them: what the
worker's /metrics reports as labelops_worker_active_leases and _active_labelers, and what
mode keda's leases trigger scales on (operator/autoscaling.py).

Campaign-wide, not per pod: every replica reads the same rows, so each reports the same value.
A lease is active while it is reserved and unexpired; one that lapsed but was not reaped yet
still holds its slot (labelstore.py), but nobody is working on it any more.

One statement on the partial index leases_reserved_by_expiry (0001_initial.sql), with the
expiry as its condition: the index holds reserved leases only (the ones held, plus lapsed
ones until a claim reaps them), never the campaign's history of consumed or released
leases, so the count reads the leases in play and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql


@dataclass(frozen=True)
class ActiveLeases:
    leases: int
    labelers: int


def active_leases_query(schema: str) -> sql.Composed:
    return sql.SQL(
        "SELECT count(*), count(DISTINCT labeler) FROM {leases}"
        " WHERE reserved AND expires_at > now()"
    ).format(leases=sql.Identifier(schema, "leases"))


def read_active_leases(conn: psycopg.Connection[Any], schema: str) -> ActiveLeases:
    row = conn.execute(active_leases_query(schema)).fetchone()
    assert row is not None  # an aggregate without GROUP BY returns one row
    return ActiveLeases(leases=int(row[0]), labelers=int(row[1]))
