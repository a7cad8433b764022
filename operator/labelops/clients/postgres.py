"""Postgres as the admin: observe, then create or alter a campaign's role and schema, migrate,
read progress, and drop both on reclaim.

Isolation between campaigns rests on ownership: each schema is owned by its own role and
nothing is granted to PUBLIC on it, so one campaign's role cannot even look up a table in
another's schema. Every identifier goes through sql.Identifier and the password through
sql.Literal; nothing user-controlled is ever formatted into SQL text.

Database-wide hardening (harden_database, checked once per operator process before the
first provisioning): PUBLIC loses TEMPORARY on the database (a campaign role could otherwise
fill temporary tablespace outside its schema and its quota) and CREATE on schema public.
This applies to every role of the database that relies on PUBLIC's grants, which is why
labelops wants a database of its own.

Provisioning takes turns under a row lock in OPERATOR_SCHEMA, a schema the admin owns and
grants nobody anything on. An advisory lock would not do: any role that can connect may take
any advisory lock key, so a campaign's workers could hold the operator's key and stall the
provisioning of every other campaign.

Calls block, so the public coroutines run them in worker threads. Connections come from a
small pool; a pool that cannot connect within the timeout raises PostgresUnavailable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from labelops.api.backend_state import ObservedDatabase, ObservedRole, RoleChanges
from labelops.api.worker_configmap import WorkerConfig
from labelops.clients.errors import PostgresUnavailable
from labelops.store import ProgressCounts, migrate, read_progress
from labelops.store.labeler_tokens import (
    TokenChanges,
    replace_service_digests,
    replace_token_digests,
)
from labelops.store.policy import CampaignPolicy, write_policy
from labelops.store.pool_usage import read_usage
from labelops.store.progress import CounterDelta, bump_counters
from labelops.store.queries import Queries
from labelops.store.summaries import BlockMark, CampaignReading, read_campaign

log = logging.getLogger(__name__)

# GRANT/REVOKE on the database and on schema public, and DROP OWNED, rewrite one catalog row
# shared by all campaigns; two sessions doing it at once fail with "tuple concurrently
# updated". A row lock (FOR UPDATE, transaction-scoped) in the operator's own schema makes
# role provisioning and dropping take turns (across operator replicas too); each holds it for
# milliseconds. Campaign roles have no USAGE on the schema, so they cannot take it.
# How long migrations may wait for a lock before the pass is retried.
MIGRATION_LOCK_TIMEOUT_SECONDS = 30.0
OPERATOR_SCHEMA = "labelops_operator"
LOCK_TABLE = "provisioning_lock"
# What reading or writing a campaign's tables raises until its schema is migrated (no schema, no
# table, a column a later migration adds): the callers answer None meanwhile.
_NOT_MIGRATED: tuple[type[psycopg.Error], ...] = (
    psycopg.errors.InvalidSchemaName,
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedColumn,
)
# And SET ROLE raises this until the campaign's first pass provisioned the role.
_NOT_PROVISIONED: tuple[type[psycopg.Error], ...] = (
    psycopg.errors.InvalidParameterValue,
    *_NOT_MIGRATED,
)
# Taken in a transaction around every CREATE, ALTER and DROP of a campaign's role: each of
# them rewrites catalog rows the campaigns' roles share (the database's ACL), and two at once
# fail with "tuple concurrently updated". Tests that drop roles themselves take it too.
TAKE_PROVISIONING_LOCK = sql.SQL("SELECT 1 FROM {} WHERE id = 1 FOR UPDATE").format(
    sql.Identifier(OPERATOR_SCHEMA, LOCK_TABLE)
)


class PostgresAdmin:
    def __init__(self, dsn: str, timeout: float = 5.0, max_connections: int = 8) -> None:
        self.timeout = timeout
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
            timeout=timeout,
            open=False,
            name="labelops-admin",
        )
        self._opened = False
        self._hardened = False
        self.migration_lock_timeout = MIGRATION_LOCK_TIMEOUT_SECONDS
        self.where = _describe_dsn(dsn)

    def close(self) -> None:
        if self._opened:
            self._pool.close()

    @contextmanager
    def _connection(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        if not self._opened:
            # Not in __init__: the pool's background connector must start inside the
            # running operator, and opening without waiting lets startup proceed while
            # Postgres is still down.
            self._pool.open(wait=False)
            self._opened = True
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as err:
            raise PostgresUnavailable(
                f"Postgres at {self.where} accepted no connection within {self.timeout:.0f}s "
                f"({what})"
            ) from err
        except psycopg.OperationalError as err:
            raise PostgresUnavailable(
                f"Postgres at {self.where} is unreachable ({what}): {err}"
            ) from err

    # --- database-wide hardening ------------------------------------------------------

    def _harden(self) -> list[str]:
        if self._hardened:
            return []
        with self._connection("harden the database") as conn:
            done = harden_database(conn)
        self._hardened = True
        if done:
            log.info("database %s hardened: %s", self.where, "; ".join(done))
        return done

    async def harden(self) -> list[str]:
        """Create the provisioning lock and revoke PUBLIC's TEMPORARY and CREATE on schema
        public, once per process; returns what had to be done (empty: already so)."""
        return await asyncio.to_thread(self._harden)

    # --- observe ---------------------------------------------------------------------

    def _observe(self, role: str, schema: str) -> ObservedDatabase:
        self._harden()
        with self._connection(f"observe role {role}") as conn:
            row = conn.execute(
                "SELECT rolconnlimit, rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)
            ).fetchone()
            owner = conn.execute(
                "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s",
                (schema,),
            ).fetchone()
        return ObservedDatabase(
            role=ObservedRole(int(row[0]), bool(row[1])) if row else None,
            schema_owner=str(owner[0]) if owner else None,
        )

    async def observe(self, role: str, schema: str) -> ObservedDatabase:
        return await asyncio.to_thread(self._observe, role, schema)

    # --- act -------------------------------------------------------------------------

    def _apply(
        self, role: str, schema: str, connection_limit: int, password: str, changes: RoleChanges
    ) -> None:
        r, s = sql.Identifier(role), sql.Identifier(schema)
        limit, secret = sql.Literal(connection_limit), sql.Literal(password)
        self._harden()
        with self._connection(f"provision role {role}") as conn, conn.transaction():
            # One transaction: a crash leaves either no role or a role with its grants
            # and schema, never a half-configured one.
            conn.execute(TAKE_PROVISIONING_LOCK)
            if changes.create_role:
                conn.execute(
                    sql.SQL(
                        "CREATE ROLE {} LOGIN PASSWORD {} CONNECTION LIMIT {} "
                        "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
                    ).format(r, secret, limit)
                )
                database = sql.Identifier(conn.info.dbname)
                # Only what workers need: connect to this database. Nothing else is granted;
                # what PUBLIC would give (TEMPORARY, CREATE on schema public) harden_database
                # took away.
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(database, r))
                conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, r))
                if not _is_superuser(conn):
                    # A CREATEROLE admin must be a member to SET ROLE for migrations.
                    conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(r))
            if changes.alter_role:
                conn.execute(sql.SQL("ALTER ROLE {} LOGIN CONNECTION LIMIT {}").format(r, limit))
            if changes.set_password:
                conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(r, secret))
            if changes.create_schema:
                conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(s, r))
            if changes.set_schema_owner:
                conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(s, r))

    async def apply(
        self, role: str, schema: str, connection_limit: int, password: str, changes: RoleChanges
    ) -> None:
        await asyncio.to_thread(self._apply, role, schema, connection_limit, password, changes)

    def _migrate(self, role: str, schema: str) -> list[str]:
        with self._connection(f"migrate schema {schema}") as conn:
            # As the campaign's role, so every table the migrations create is owned by it.
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            # Migrations take turns under an advisory key per schema (store/migrations.py),
            # which any role can take, another campaign's too: bounded, a held key makes
            # this pass fail (and retry with backoff) instead of hanging the campaign.
            conn.execute(
                sql.SQL("SET lock_timeout = {}").format(
                    sql.Literal(f"{int(self.migration_lock_timeout * 1000)}ms")
                )
            )
            try:
                # Bodies unchecked: every test migrates with the check on (migrations.py).
                return migrate(conn, schema, check_bodies=False)
            except psycopg.errors.LockNotAvailable as err:
                raise PostgresUnavailable(
                    f"Postgres at {self.where}: migrations of schema {schema} waited "
                    f"{self.migration_lock_timeout:.0f}s for a lock (another migration, or a "
                    f"session holding the schema's migration key): {err}"
                ) from err
            finally:
                conn.execute("RESET lock_timeout")
                conn.execute("RESET ROLE")

    async def migrate(self, role: str, schema: str) -> list[str]:
        """Apply the worker's pending migrations; returns their labels (empty: up to date)."""
        return await asyncio.to_thread(self._migrate, role, schema)

    def _sync_target(self, role: str, schema: str, config: WorkerConfig) -> int:
        with self._connection(f"sync the target of {schema}") as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            try:
                policy = CampaignPolicy.from_config(config)
                write_policy(conn, schema, policy)
                if policy.adaptive:
                    # Adaptive overlap decides completion per item: complete items stay so.
                    return 0
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(
                        Queries(schema).reopen_items,
                        {"labels_per_item": config.target.labels_per_item},
                    )
                    reopened = len(cur.fetchall())
                    bump_counters(cur, schema, CounterDelta(items_completed=-reopened))
                return reopened
            finally:
                conn.execute("RESET ROLE")

    async def sync_target(self, role: str, schema: str, config: WorkerConfig) -> int:
        """Write the campaign's policy and reopen the items completed under a smaller
        target.labelsPerItem (as a worker does at start); returns how many were reopened.
        For a campaign with no workers running (completed), whose workers would otherwise
        never start to do it."""
        return await asyncio.to_thread(self._sync_target, role, schema, config)

    def _replace_tokens(
        self, role: str, schema: str, digests: Mapping[str, bytes]
    ) -> TokenChanges | None:
        with self._connection(f"write the labeler tokens of {schema}") as conn:
            try:
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
                return replace_token_digests(conn, schema, digests)
            except _NOT_PROVISIONED:
                return None
            finally:
                conn.execute("RESET ROLE")

    async def replace_tokens(
        self, role: str, schema: str, digests: Mapping[str, bytes]
    ) -> TokenChanges | None:
        """Make the campaign's labeler token digests exactly `digests` (labeler id ->
        SHA-256); what changed, or None while the schema is not migrated."""
        return await asyncio.to_thread(self._replace_tokens, role, schema, digests)

    def _replace_services(
        self, role: str, schema: str, digests: Mapping[str, bytes]
    ) -> bool | None:
        with self._connection(f"write the service tokens of {schema}") as conn:
            try:
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
                return replace_service_digests(conn, schema, digests)
            except _NOT_PROVISIONED:
                return None
            finally:
                conn.execute("RESET ROLE")

    async def replace_services(
        self, role: str, schema: str, digests: Mapping[str, bytes]
    ) -> bool | None:
        """Make the campaign's service token digests (a pool's router) exactly `digests`;
        whether anything changed, or None while the schema is not migrated."""
        return await asyncio.to_thread(self._replace_services, role, schema, digests)

    def _usage(
        self, schema: str, half_life: float, window: float
    ) -> tuple[float, frozenset[str]] | None:
        with self._connection(f"read pool usage of {schema}") as conn:
            try:
                return read_usage(conn, schema, half_life, window)
            except _NOT_MIGRATED:
                return None

    async def read_pool_usage(
        self, schema: str, half_life: float, window: float
    ) -> tuple[float, frozenset[str]] | None:
        """A pool member's decayed labels and active labelers over the window (pool status)."""
        return await asyncio.to_thread(self._usage, schema, half_life, window)

    def _progress(self, schema: str) -> ProgressCounts | None:
        with self._connection(f"read progress of {schema}") as conn:
            try:
                return read_progress(conn, schema)
            except _NOT_MIGRATED:
                return None

    async def read_progress(self, schema: str) -> ProgressCounts | None:
        """O(1) counters of the campaign, None while its schema is not migrated."""
        return await asyncio.to_thread(self._progress, schema)

    def _reading(self, schema: str, blocks_since: BlockMark | None) -> CampaignReading | None:
        with self._connection(f"read status of {schema}") as conn:
            try:
                # One transaction for the four reads: one commit instead of four (a thousand
                # campaigns read every few seconds to a minute), and one snapshot of them.
                with conn.transaction():
                    return read_campaign(conn, schema, blocks_since)
            except _NOT_MIGRATED:
                return None

    async def read_campaign(
        self, schema: str, blocks_since: BlockMark | None
    ) -> CampaignReading | None:
        """Counters, model and quality summaries and the labelers blocked after
        `blocks_since`, all O(1) in labels; None while the schema is not migrated."""
        return await asyncio.to_thread(self._reading, schema, blocks_since)

    def _drop(self, role: str, schema: str) -> list[str]:
        r = sql.Identifier(role)
        dropped = []
        self._harden()
        with self._connection(f"drop schema {schema}") as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if exists:
                # No new sessions, then end the workers' ones: they would hold locks that
                # DROP SCHEMA waits on, and a role with sessions cannot be dropped cleanly.
                conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(r))
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (role,),
                )
            present = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone()
            with conn.transaction():
                conn.execute(TAKE_PROVISIONING_LOCK)
                if present:
                    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
                    dropped.append(f"schema {schema}")
                if exists:
                    # Revokes its database grants (and drops anything it still owns here).
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(r))
                    conn.execute(sql.SQL("DROP ROLE {}").format(r))
                    dropped.append(f"role {role}")
        return dropped

    async def drop(self, role: str, schema: str) -> list[str]:
        """Drop the schema (with all labels) and the role; returns what existed."""
        return await asyncio.to_thread(self._drop, role, schema)


def harden_database(conn: psycopg.Connection[Any]) -> list[str]:
    """Idempotent: the operator's lock table, and PUBLIC without TEMPORARY on the database
    and without CREATE on schema public. Returns what it changed."""
    done: list[str] = []
    schema, table = sql.Identifier(OPERATOR_SCHEMA), sql.Identifier(OPERATOR_SCHEMA, LOCK_TABLE)
    if not _lock_table_exists(conn):
        try:
            with conn.transaction():
                # Owned by the admin; nothing is granted on it to anyone else (a new schema
                # gives PUBLIC nothing), so only the admin (and superusers) can lock its row.
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
                conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema))
                conn.execute(
                    sql.SQL("CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY)").format(table)
                )
                conn.execute(
                    sql.SQL("INSERT INTO {} VALUES (1) ON CONFLICT DO NOTHING").format(table)
                )
            done.append(f"created the provisioning lock {OPERATOR_SCHEMA}.{LOCK_TABLE}")
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
            # Another operator replica created it at the same moment.
            if not _lock_table_exists(conn):
                raise
    temp, create = _public_privileges(conn)
    if temp or create:
        with conn.transaction():
            conn.execute(TAKE_PROVISIONING_LOCK)
            if temp:
                database = sql.Identifier(conn.info.dbname)
                conn.execute(
                    sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(database)
                )
                done.append("revoked TEMPORARY on the database from PUBLIC")
            if create:
                # The default since PostgreSQL 15; enforced for older servers and for
                # databases where someone re-granted it.
                conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
                done.append("revoked CREATE on schema public from PUBLIC")
        # A REVOKE by a role that does not own the object only warns, and revokes nothing.
        still = [
            what
            for what, kept in zip(
                ("TEMPORARY on the database", "CREATE on schema public"),
                _public_privileges(conn),
                strict=True,
            )
            if kept
        ]
        if still:
            log.warning(
                "PUBLIC still has %s: the admin role cannot revoke it (not the owner); as the "
                "owner run REVOKE TEMPORARY ON DATABASE %s FROM PUBLIC; REVOKE CREATE ON SCHEMA "
                "public FROM PUBLIC",
                " and ".join(still),
                conn.info.dbname,
            )
            done = [d for d in done if not any(w in d for w in still)]
    return done


def _public_privileges(conn: psycopg.Connection[Any]) -> tuple[bool, bool]:
    """(TEMPORARY on the database, CREATE on schema public) as PUBLIC has them."""
    row = conn.execute(
        "SELECT has_database_privilege('public', current_database(), 'TEMPORARY'), "
        "has_schema_privilege('public', 'public', 'CREATE')"
    ).fetchone()
    return (bool(row[0]), bool(row[1])) if row else (False, False)


def _lock_table_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (OPERATOR_SCHEMA, LOCK_TABLE),
    ).fetchone()
    return row is not None


def _is_superuser(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


def _describe_dsn(dsn: str) -> str:
    """host:port/dbname for messages; never the password."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    host, port = params.get("host", "localhost"), params.get("port", 5432)
    return f"{host}:{port}/{params.get('dbname', '')}"
