"""What a LabelerPool's status reads from a member campaign's schema: its labels over the
window, each weighing exp2(-age / half-life), and the labelers active in it (a label or a
reserved lease within the window).

Both label reads scan only the window's rows, through labels_human_by_created_at
(migrations/0006_recent_human_labels.sql), never the campaign's whole history."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql


def usage_queries(schema: str) -> tuple[sql.Composed, sql.Composed]:
    """The decayed sum and the active labelers, with parameters h (half-life) and w (window),
    in seconds."""
    labels = sql.Identifier(schema, "labels")
    leases = sql.Identifier(schema, "leases")
    decayed = sql.SQL(
        "SELECT coalesce(sum(power(2.0, -extract(epoch FROM now() - created_at) / %(h)s)), 0)"
        " FROM {labels} WHERE created_at > now() - make_interval(secs => %(w)s)"
        " AND origin = 'human'"
    ).format(labels=labels)
    who = sql.SQL(
        "SELECT labeler FROM {labels} WHERE created_at > now() - make_interval(secs => %(w)s)"
        " AND origin = 'human'"
        " UNION SELECT labeler FROM {leases} WHERE reserved AND expires_at > now()"
    ).format(labels=labels, leases=leases)
    return decayed, who


def read_usage(
    conn: psycopg.Connection[Any], schema: str, half_life: float, window: float
) -> tuple[float, frozenset[str]]:
    decayed_query, who = usage_queries(schema)
    params = {"h": half_life, "w": window}
    with conn.cursor() as cur:
        cur.execute(decayed_query, params)
        row = cur.fetchone()
        decayed = float(row[0]) if row else 0.0
        cur.execute(who, params)
        active = frozenset(str(r[0]) for r in cur.fetchall())
    return decayed, active
