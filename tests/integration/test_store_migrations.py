"""Migrations: versioned, idempotent, concurrent-safe, runnable as the campaign's own role;
function files re-applied on every run, replacing, dropping and revoking as the rule in
labelops.store.migrations says."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import LiteralString

import psycopg
import pytest
from psycopg import sql
from schema_catalog import schema_shape
from test_store_support import unique_name

from labelops.store.active_leases import active_leases_query, read_active_leases
from labelops.store.migrations import available_functions, available_migrations, migrate
from labelops.store.pool_usage import read_usage, usage_queries
from labelops.store.progress import PROGRESS_SHARDS, read_progress

pytestmark = pytest.mark.integration

ALL = [m.label for m in available_migrations()]
FUNCTIONS = [f.name for f in available_functions()]


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    name = unique_name("mig")
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def functions_of(conn: psycopg.Connection, schema: str) -> list[tuple[str, int]]:
    """(name, oid) of the schema's functions: an oid changes when a function is re-created."""
    rows = conn.execute(
        "SELECT p.proname, p.oid::bigint FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s ORDER BY 1",
        (schema,),
    ).fetchall()
    return [(name, oid) for name, oid in rows]


def run(conn: psycopg.Connection, statement: LiteralString, schema: str) -> None:
    """statement with {schema} replaced by the quoted schema name."""
    conn.execute(sql.SQL(statement).format(schema=sql.Identifier(schema)))


def test_migrate_applies_every_migration_once(postgres_dsn: str, schema: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        assert migrate(conn, schema) == ALL
        shape, functions = schema_shape(conn, schema), functions_of(conn, schema)
        assert [name for name, _ in functions] == FUNCTIONS
        assert migrate(conn, schema) == [], "a second run found something pending"
        assert schema_shape(conn, schema) == shape, "a second run changed the schema"
        assert functions_of(conn, schema) == functions, "a second run re-created a function"
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


def proc_versions(conn: psycopg.Connection, schema: str) -> list[tuple[str, str]]:
    """(name, row version) of the schema's functions: CREATE OR REPLACE makes a new one."""
    rows = conn.execute(
        "SELECT p.proname, p.xmin::text || ':' || p.ctid::text FROM pg_proc p"
        " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s ORDER BY 1",
        (schema,),
    ).fetchall()
    return [(name, version) for name, version in rows]


def test_an_up_to_date_schema_is_read_not_rewritten_and_takes_no_lock(
    postgres_dsn: str, schema: str
) -> None:
    """What a resync pass costs: no function re-created, no advisory lock waited for (the
    lock is held elsewhere and lock_timeout would refuse a wait)."""
    with (
        psycopg.connect(postgres_dsn, autocommit=True) as conn,
        psycopg.connect(postgres_dsn, autocommit=True) as holder,
    ):
        migrate(conn, schema)
        versions = proc_versions(conn, schema)
        holder.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (0x4C4F, schema))
        conn.execute("SET lock_timeout = '200ms'")
        assert migrate(conn, schema) == []
        assert proc_versions(conn, schema) == versions


def test_files_other_than_the_recorded_ones_are_applied_again(
    postgres_dsn: str, schema: str
) -> None:
    """As after an upgrade that changed a function file: function_set names other files."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        migrate(conn, schema)
        versions = proc_versions(conn, schema)
        run(conn, "UPDATE {schema}.function_set SET files_digest = 'older files'", schema)
        assert migrate(conn, schema) == []
        after = proc_versions(conn, schema)
        assert [name for name, _ in after] == [name for name, _ in versions]
        assert all(old != new for (_, old), (_, new) in zip(versions, after, strict=True))
        # and recorded: the run after reads it and does nothing
        assert migrate(conn, schema) == []
        assert proc_versions(conn, schema) == after


def test_without_body_checks_the_schema_is_the_same_and_others_are_untouched(
    postgres_dsn: str, schema: str
) -> None:
    """The operator's migrate (check_bodies=False) makes what a checked one makes, and it
    finds the schema's functions by their dependency on it: another campaign's functions of
    the same names are neither counted, replaced nor dropped."""
    other = unique_name("mig")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        try:
            assert migrate(conn, other) == ALL
            others = proc_versions(conn, other)
            assert migrate(conn, schema, check_bodies=False) == ALL
            assert schema_shape(conn, schema) == schema_shape(conn, other)
            assert [name for name, _ in functions_of(conn, schema)] == FUNCTIONS
            assert migrate(conn, schema) == [], "a checked run found the unchecked one stale"
            run(conn, "UPDATE {schema}.function_set SET files_digest = 'older files'", schema)
            assert migrate(conn, schema, check_bodies=False) == []
            assert proc_versions(conn, other) == others
            assert migrate(conn, other) == [], (
                "re-applying one schema's functions touched another's"
            )
            result = conn.execute(
                sql.SQL("SELECT item_found, had_lease FROM {}('nope', 'ann')").format(
                    sql.Identifier(schema, "release_task")
                )
            ).fetchall()
            assert result == [(False, False)]
        finally:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(other)))


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
            function_owners = admin.execute(
                "SELECT DISTINCT pg_get_userbyid(proowner) FROM pg_proc p"
                " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s",
                (schema,),
            ).fetchall()
            assert function_owners == [(role,)]
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


def test_no_function_is_executable_by_public(postgres_dsn: str, schema: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        migrate(conn, schema)
        # Re-created functions come with EXECUTE for PUBLIC unless migrate() revokes it.
        run(conn, "DROP FUNCTION {schema}.rfc3339_utc", schema)
        migrate(conn, schema)
        executable = conn.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = %s AND has_function_privilege('public', p.oid, 'EXECUTE')",
            (schema,),
        ).fetchall()
    assert executable == []


def test_a_hand_edited_function_is_put_back_as_its_file_says(
    postgres_dsn: str, schema: str
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        migrate(conn, schema)
        run(
            conn,
            "CREATE OR REPLACE FUNCTION {schema}.rfc3339_utc(p_moment timestamptz)"
            " RETURNS text LANGUAGE sql AS $$ SELECT 'edited' $$",
            schema,
        )
        migrate(conn, schema)
        [(written,)] = conn.execute(
            sql.SQL("SELECT {}('2026-01-02 03:04:05+00')").format(
                sql.Identifier(schema, "rfc3339_utc")
            )
        ).fetchall()
    assert written == "2026-01-02T03:04:05Z"


def test_a_function_whose_result_type_changed_is_dropped_and_created(
    postgres_dsn: str, schema: str
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        migrate(conn, schema)
        # As an older release might have had it: same arguments, another result type,
        # which CREATE OR REPLACE cannot change.
        run(conn, "DROP FUNCTION {schema}.release_task", schema)
        run(
            conn,
            "CREATE FUNCTION {schema}.release_task(p_item_id text, p_labeler text)"
            " RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$",
            schema,
        )
        migrate(conn, schema)
        result = conn.execute(
            sql.SQL("SELECT item_found, had_lease FROM {}('nope', 'ann')").format(
                sql.Identifier(schema, "release_task")
            )
        ).fetchall()
    assert result == [(False, False)]


def test_functions_no_file_defines_are_dropped(postgres_dsn: str, schema: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        migrate(conn, schema)
        functions = functions_of(conn, schema)
        # A retired function, and an old signature of one whose arguments changed.
        run(
            conn,
            "CREATE FUNCTION {schema}.retired() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            schema,
        )
        run(
            conn,
            "CREATE FUNCTION {schema}.claim_task(p_labeler text) RETURNS int"
            " LANGUAGE sql AS 'SELECT 1'",
            schema,
        )
        migrate(conn, schema)
        assert functions_of(conn, schema) == functions


def test_a_dependent_object_stops_a_drop_and_the_functions_stay_as_they_were(
    postgres_dsn: str, schema: str
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        migrate(conn, schema)
        run(
            conn,
            "CREATE FUNCTION {schema}.retired() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            schema,
        )
        run(conn, "CREATE VIEW {schema}.uses_retired AS SELECT {schema}.retired() AS one", schema)
        functions = functions_of(conn, schema)
        with pytest.raises(psycopg.errors.DependentObjectsStillExist, match="retired"):
            migrate(conn, schema)
        assert functions_of(conn, schema) == functions
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


@pytest.mark.parametrize(
    ("version", "name", "refused"),
    [(9999, "later", "9999_later"), (1, "claim_and_submit", "0001_claim_and_submit")],
)
def test_a_schema_that_records_an_unknown_migration_is_refused(
    postgres_dsn: str, schema: str, version: int, name: str, refused: str
) -> None:
    """A newer labelops's migration, or a number that meant another migration once."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        migrate(conn, schema)
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE version = %s").format(
                sql.Identifier(schema, "schema_migrations")
            ),
            (version,),
        )
        conn.execute(
            sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(
                sql.Identifier(schema, "schema_migrations")
            ),
            (version, name),
        )
        functions = functions_of(conn, schema)
        with pytest.raises(RuntimeError, match=rf"records migrations \['{refused}'\]"):
            migrate(conn, schema)
        assert functions_of(conn, schema) == functions


# A campaign some weeks in: labels spread over 30 days (a tenth of them machine labels), and
# the leases of its history (consumed or released: no longer reserved) beside a few held.
HISTORY_LABELS = 50_000
RECENT_HUMAN_LABELS = 40
HELD_LEASES = 30


def write_history(conn: psycopg.Connection, schema: str) -> None:
    items, labels, leases = (sql.Identifier(schema, t) for t in ("items", "labels", "leases"))
    statements = [
        sql.SQL(
            "INSERT INTO {items} (external_id, payload)"
            " SELECT 'item-' || i, '{{}}' FROM generate_series(1, %(n)s) AS i"
        ),
        sql.SQL(
            "INSERT INTO {labels} (id, item_id, labeler, value, origin, ordinal, created_at)"
            " SELECT gen_random_uuid(), i, 'labeler-' || mod(i, 97), '{{}}',"
            "  CASE WHEN mod(i, 10) = 0 THEN 'machine' ELSE 'human' END, 1,"
            "  now() - interval '2 hours' - mod(i, 30) * interval '1 day'"
            "  - mod(i, 3600) * interval '1 second'"
            " FROM generate_series(1, %(n)s) AS i"
        ),
        # The window's labels: RECENT_HUMAN_LABELS of them, by 4 labelers.
        sql.SQL(
            "UPDATE {labels} SET created_at = now() - interval '1 minute', origin = 'human',"
            " labeler = 'recent-' || mod(item_id, 4) WHERE item_id <= %(recent)s"
        ),
        sql.SQL(
            "INSERT INTO {leases} (item_id, labeler, claimed_at, expires_at, reserved)"
            " SELECT i, 'labeler-' || mod(i, 97), now() - interval '3 days',"
            "  now() - interval '3 days' + interval '10 minutes', false"
            " FROM generate_series(1, %(n)s) AS i"
        ),
        sql.SQL(
            "UPDATE {leases} SET reserved = true, claimed_at = now(),"
            " expires_at = now() + interval '10 minutes' WHERE item_id > %(n)s - %(held)s"
        ),
    ]
    params = {"n": HISTORY_LABELS, "recent": RECENT_HUMAN_LABELS, "held": HELD_LEASES}
    with conn.transaction():
        for statement in statements:
            conn.execute(statement.format(items=items, labels=labels, leases=leases), params)
    for table in (labels, leases):
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))


def plan_of(conn: psycopg.Connection, query: sql.Composed, params: dict[str, float]) -> str:
    rows = conn.execute(sql.SQL("EXPLAIN ") + query, params).fetchall()
    return "\n".join(str(row[0]) for row in rows)


def test_pool_usage_and_active_leases_read_indexes_not_the_history(
    postgres_dsn: str, schema: str
) -> None:
    """0006's index serves the pool's usage reads; 0001's partial index the active leases.
    Checked with EXPLAIN on a schema holding a history (50,000 labels and leases)."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        migrate(conn, schema)
        write_history(conn, schema)
        params = {"h": 1800.0, "w": 3600.0}
        decayed, who = usage_queries(schema)
        for query in (decayed, who):
            plan = plan_of(conn, query, params)
            assert "labels_human_by_created_at" in plan, plan
            assert "Seq Scan on labels" not in plan, plan
        plan = plan_of(conn, active_leases_query(schema), {})
        # A partial index of reserved leases, on their expiry: the leases held (and lapsed
        # ones not reaped yet), never the campaign's history of consumed or released ones.
        assert "using leases_reserved_by_expiry" in plan, plan
        assert "Seq Scan on leases" not in plan, plan

        total, active = read_usage(conn, schema, 1800.0, 3600.0)
        assert active == {f"recent-{n}" for n in range(4)} | {
            f"labeler-{i % 97}" for i in range(HISTORY_LABELS - HELD_LEASES + 1, HISTORY_LABELS + 1)
        }
        assert RECENT_HUMAN_LABELS * 0.97 < total <= RECENT_HUMAN_LABELS
        held = read_active_leases(conn, schema)
        assert (held.leases, held.labelers) == (HELD_LEASES, HELD_LEASES)
