"""Migrations: versioned, idempotent, concurrent-safe, runnable as the campaign's own role."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from test_store_support import unique_name

from labelops.store.migrations import available_migrations, migrate
from labelops.store.progress import PROGRESS_SHARDS, read_progress

pytestmark = pytest.mark.integration

ALL = [m.label for m in available_migrations()]


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    name = unique_name("mig")
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_migrate_applies_every_migration_once(postgres_dsn: str, schema: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        assert migrate(conn, schema) == ALL
        assert migrate(conn, schema) == [], "a second run found something pending"
        recorded = conn.execute(
            sql.SQL("SELECT version, name FROM {} ORDER BY version").format(
                sql.Identifier(schema, "schema_migrations")
            )
        ).fetchall()
        assert [f"{v:04d}_{n}" for v, n in recorded] == ALL
        shards = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "progress_shards"))
        ).fetchone()
        assert shards == (PROGRESS_SHARDS,)
        assert read_progress(conn, schema).labels == 0


def test_concurrent_migrations_apply_once(postgres_dsn: str, schema: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def run() -> None:
        try:
            with psycopg.connect(postgres_dsn, autocommit=True) as conn:
                start.wait()
                results.append(migrate(conn, schema))
        except BaseException as err:  # reported below, with the thread's error
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(results, key=len) == [[], [], [], ALL]


def test_migrate_as_campaign_role_owns_everything_without_superuser(
    postgres_dsn: str, schema: str
) -> None:
    role = schema  # the operator names the role like the schema
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(
                sql.Identifier(role)
            )
        )
        try:
            admin.execute(
                sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                    sql.Identifier(schema), sql.Identifier(role)
                )
            )
            admin.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            assert migrate(admin, schema) == ALL
            admin.execute("RESET ROLE")
            owners = admin.execute(
                "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
                (schema,),
            ).fetchall()
            assert owners == [(role,)]
        finally:
            admin.execute("RESET ROLE")
            drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            admin.execute(drop)
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_migrate_refuses_a_connection_inside_a_transaction(postgres_dsn: str, schema: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(RuntimeError, match="outside any transaction"):
            migrate(conn, schema)
