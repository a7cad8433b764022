"""PostgreSQL hardening on the real server: what a campaign's role provisioned by the operator
(PostgresAdmin) can no longer do. It cannot create TEMP tables, cannot create in schema
public, cannot take (or even see) the provisioning lock, cannot stall provisioning with the
advisory lock key the operator once used, cannot hang another campaign's migrations (they
give up after a bounded wait and the pass is retried), and cannot read another campaign's
schema."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from test_store_support import unique_name

from labelops.api.backend_state import RoleChanges
from labelops.clients.errors import PostgresUnavailable
from labelops.clients.postgres import (
    LOCK_TABLE,
    OPERATOR_SCHEMA,
    PostgresAdmin,
    harden_database,
)

pytestmark = pytest.mark.integration

NEW = RoleChanges(create_role=True, create_schema=True)
# The database-wide advisory lock key provisioning used before the row lock.
OLD_ADVISORY_KEY = (0x4C50, 1)
# store/migrations.py: migrations of a schema take turns under (this, hashtext(schema)).
MIGRATION_KEY_CLASS = 0x4C4F


@dataclass(frozen=True)
class Provisioned:
    role: str
    schema: str
    dsn: str


def role_dsn(admin_dsn: str, role: str, password: str) -> str:
    params = conninfo_to_dict(admin_dsn)
    params.update(user=role, password=password)
    return make_conninfo(**{k: str(v) for k, v in params.items()})


@pytest.fixture
def admin(postgres_dsn: str) -> Iterator[PostgresAdmin]:
    pg = PostgresAdmin(postgres_dsn, timeout=5.0, max_connections=4)
    yield pg
    pg.close()


def provision(admin: PostgresAdmin, admin_dsn: str, prefix: str) -> Provisioned:
    name = unique_name(prefix)
    role, schema, password = f"{name}-role", f"lc_{name}", secrets.token_urlsafe(16)
    admin._apply(role, schema, 5, password, NEW)
    admin._migrate(role, schema)
    return Provisioned(role, schema, role_dsn(admin_dsn, role, password))


@pytest.fixture
def campaigns(admin: PostgresAdmin, postgres_dsn: str) -> Iterator[tuple[Provisioned, ...]]:
    made = [provision(admin, postgres_dsn, "harda"), provision(admin, postgres_dsn, "hardb")]
    yield tuple(made)
    for campaign in made:
        admin._drop(campaign.role, campaign.schema)


def test_public_has_neither_temporary_nor_create_on_schema_public(
    campaigns: tuple[Provisioned, ...], postgres_dsn: str
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT has_database_privilege('public', current_database(), 'TEMPORARY'), "
            "has_schema_privilege('public', 'public', 'CREATE'), "
            "has_schema_privilege('public', %s, 'USAGE')",
            (OPERATOR_SCHEMA,),
        ).fetchone()
    assert row == (False, False, False)


def test_a_campaign_role_cannot_create_temp_tables(campaigns: tuple[Provisioned, ...]) -> None:
    a, _ = campaigns
    with psycopg.connect(a.dsn, autocommit=True, connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (a.role,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="temporary"):
            conn.execute("CREATE TEMP TABLE scratch (x int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE public.sneaky (x int)")
        # Its own schema still works: hardening took nothing the workers need.
        conn.execute(
            sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(a.schema, "own_table"))
        )


def test_a_campaign_role_cannot_take_the_provisioning_lock(
    campaigns: tuple[Provisioned, ...],
) -> None:
    a, _ = campaigns
    lock_table = sql.Identifier(OPERATOR_SCHEMA, LOCK_TABLE)
    with psycopg.connect(a.dsn, autocommit=True, connect_timeout=5) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql.SQL("SELECT 1 FROM {} WHERE id = 1 FOR UPDATE").format(lock_table))
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute(sql.SQL("LOCK TABLE {}").format(lock_table))


def test_a_campaign_role_holding_the_old_advisory_key_does_not_stall_provisioning(
    campaigns: tuple[Provisioned, ...], admin: PostgresAdmin, postgres_dsn: str
) -> None:
    a, _ = campaigns
    with psycopg.connect(a.dsn, autocommit=True, connect_timeout=5) as hostile:
        # Any role may take any advisory key: this is what a campaign's workers could do.
        hostile.execute("SELECT pg_advisory_lock(%s, %s)", OLD_ADVISORY_KEY)
        done = threading.Event()
        made: list[Provisioned] = []

        def run() -> None:
            made.append(provision(admin, postgres_dsn, "hardc"))
            done.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            assert done.wait(20), "provisioning waited on a lock a campaign role holds"
        finally:
            hostile.execute("SELECT pg_advisory_unlock_all()")
            thread.join(20)
            for campaign in made:
                admin._drop(campaign.role, campaign.schema)


def test_provisioning_takes_turns_under_the_row_lock(
    campaigns: tuple[Provisioned, ...], admin: PostgresAdmin, postgres_dsn: str
) -> None:
    lock_table = sql.Identifier(OPERATOR_SCHEMA, LOCK_TABLE)
    made: list[Provisioned] = []
    with psycopg.connect(postgres_dsn, autocommit=True) as holder:
        with holder.transaction():
            holder.execute(sql.SQL("SELECT 1 FROM {} WHERE id = 1 FOR UPDATE").format(lock_table))
            thread = threading.Thread(
                target=lambda: made.append(provision(admin, postgres_dsn, "hardd")), daemon=True
            )
            thread.start()
            # The provisioning session waits for the row lock this transaction holds.
            with psycopg.connect(postgres_dsn, autocommit=True) as observer:
                waiting = False
                for _ in range(200):
                    row = observer.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query LIKE %s",
                        (f"%{OPERATOR_SCHEMA}%FOR UPDATE%",),
                    ).fetchone()
                    if row and row[0] > 0:
                        waiting = True
                        break
                    thread.join(0.05)
                assert waiting, "provisioning did not wait for the provisioning lock"
            assert not made
        thread.join(20)
    assert len(made) == 1
    admin._drop(made[0].role, made[0].schema)


def test_a_campaign_role_cannot_read_another_campaigns_schema(
    campaigns: tuple[Provisioned, ...],
) -> None:
    a, b = campaigns
    with psycopg.connect(a.dsn, autocommit=True, connect_timeout=5) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute(
                sql.SQL("SELECT * FROM {}").format(sql.Identifier(b.schema, "schema_migrations"))
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(b.schema, "planted"))
            )


def test_a_campaign_role_holding_anothers_migration_key_cannot_hang_its_migrations(
    campaigns: tuple[Provisioned, ...], admin: PostgresAdmin
) -> None:
    a, b = campaigns
    admin.migration_lock_timeout = 1.0
    with psycopg.connect(b.dsn, autocommit=True, connect_timeout=5) as hostile:
        hostile.execute(
            "SELECT pg_advisory_lock(%s, hashtext(%s))", (MIGRATION_KEY_CLASS, a.schema)
        )
        # Up to date: read without the key, so holding it stops nothing.
        assert admin._migrate(a.role, a.schema) == []
        # Function files other than the recorded ones (an upgrade): the key is needed.
        with admin._connection("mark stale") as conn:
            conn.execute(
                sql.SQL("UPDATE {} SET files_digest = 'older files'").format(
                    sql.Identifier(a.schema, "function_set")
                )
            )
        with pytest.raises(PostgresUnavailable, match=f"migrations of schema {a.schema} waited"):
            admin._migrate(a.role, a.schema)
        hostile.execute("SELECT pg_advisory_unlock_all()")
    assert admin._migrate(a.role, a.schema) == []  # up to date, and the session was reset
    with admin._connection("check") as conn:
        assert conn.execute("SHOW lock_timeout").fetchone() == ("0",)
        assert conn.execute("SELECT current_user = session_user").fetchone() == (True,)


def test_hardening_takes_back_what_someone_re_granted_to_public(
    campaigns: tuple[Provisioned, ...], postgres_dsn: str
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        database = sql.Identifier(conn.info.dbname)
        conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO PUBLIC").format(database))
        conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
        try:
            assert harden_database(conn) == [
                "revoked TEMPORARY on the database from PUBLIC",
                "revoked CREATE on schema public from PUBLIC",
            ]
        finally:
            conn.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(database))
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        assert harden_database(conn) == []
