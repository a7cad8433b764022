"""Versioned migrations of a campaign's schema.

Migrations are the files `migrations/NNNN_name.sql`, applied in order of NNNN, each in its
own transaction together with its row in "<schema>".schema_migrations, so a crash leaves
every migration either fully applied or not at all. A session-level advisory lock per
schema makes concurrent callers (operator passes, worker replicas) take turns: the second
one finds nothing pending.

The operator calls migrate() as the campaign's role (after SET ROLE), so the files use
unqualified names and run with search_path set to the schema: everything lands inside it
and is owned by that role. No superuser is needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Advisory locks are database-wide: the first key namespaces ours, the second is the schema.
_LOCK_NAMESPACE = 0x4C4F  # "LO"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql_text: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def available_migrations() -> list[Migration]:
    """The migrations shipped with this package, in the order they apply."""
    found = []
    for entry in (resources.files("labelops.store") / "migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(
                Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migration files share a version number: {versions}")
    return found


def migrate(conn: psycopg.Connection, schema: str) -> list[str]:
    """Apply the pending migrations to `schema`; return the ones applied ("0001_initial").

    conn must not be inside a transaction. The schema is created when missing (that needs
    CREATE on the database; an operator that pre-creates the schema does not need it).
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("migrate() needs a connection outside any transaction")
    saved_autocommit = conn.autocommit
    conn.autocommit = True
    try:
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_LOCK_NAMESPACE, schema))
        try:
            return _apply_pending(conn, schema)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_LOCK_NAMESPACE, schema))
    finally:
        conn.autocommit = saved_autocommit


def applied_versions(conn: psycopg.Connection, schema: str) -> set[int]:
    """Versions recorded in the schema's schema_migrations (empty when it has none yet)."""
    exists = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL",
        (sql.Identifier(schema, "schema_migrations").as_string(conn),),
    ).fetchone()
    if not exists or not exists[0]:
        return set()
    rows = conn.execute(
        sql.SQL("SELECT version FROM {}").format(sql.Identifier(schema, "schema_migrations"))
    ).fetchall()
    return {row[0] for row in rows}


def _apply_pending(conn: psycopg.Connection, schema: str) -> list[str]:
    _ensure_bookkeeping(conn, schema)
    done = applied_versions(conn, schema)
    applied = []
    for migration in available_migrations():
        if migration.version in done:
            continue
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
            # The files are trusted package data; running them as one multi-statement
            # string keeps them plain SQL files a reviewer can read and psql can run.
            conn.execute(migration.sql_text.encode())
            conn.execute(
                sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(
                    sql.Identifier(schema, "schema_migrations")
                ),
                (migration.version, migration.name),
            )
        applied.append(migration.label)
    return applied


def _ensure_bookkeeping(conn: psycopg.Connection, schema: str) -> None:
    # CREATE SCHEMA IF NOT EXISTS checks the database privilege before existence, so a
    # role that only owns its pre-created schema would fail on it: look first.
    present = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    if present is None:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        ).format(sql.Identifier(schema, "schema_migrations"))
    )
