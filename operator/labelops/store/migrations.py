"""How a campaign's schema is defined, and how migrate() brings one up to date.

The schema is made from two kinds of files, each with one rule:

`migrations/NNNN_name.sql`: tables, indexes, constraints, seed rows, and the row types the
functions return (function signatures depend on those, so they change like tables).
Applied once each, in order of NNNN, each in its own transaction together with its row in
"<schema>".schema_migrations, so a crash leaves every migration either fully applied or
not at all. A migration that has shipped is never edited: the schema changes through the
next number (`0002_...`). A migration defines no function (refused when read), and cannot
use one, since functions are applied after the migrations.

`functions/<name>.sql`: exactly one function, `CREATE OR REPLACE FUNCTION <name>(...)`,
the only place it is written (a trigger on it goes in the same file, as CREATE OR REPLACE
TRIGGER). Every migrate() that finds anything changed (below) re-applies all of them, after
the migrations, in one transaction, in file-name order, so changing a function means
editing its file and nothing else:
  - CREATE OR REPLACE keeps the function's identity and privileges. Where it refuses (the
    result type, or a parameter's name or default, changed), migrate() drops the old one
    and creates the new one; the DROP has no CASCADE, so an object that depends on the
    function (a trigger, a default) stops the migration rather than vanishing with it.
  - A function of the schema that no file defined in this run is dropped: the old
    signature when a file changed its argument types, or a function whose file was
    deleted, which is how a function is retired (once no worker still running calls it).
  - PUBLIC keeps no EXECUTE on any function of the schema. They run with the caller's
    privileges (SECURITY INVOKER, the default) and pin search_path to the schema (`SET
    search_path FROM CURRENT`, which migrate() has set).
  - A LANGUAGE sql function's body is checked when it is created, so it may only call
    functions whose files sort before its own; PL/pgSQL bodies are resolved when called.
    The operator skips that check (migrate(check_bodies=False), as pg_dump's restores do):
    resolving each call in a body reads every function of that name in the database, one
    per campaign schema, again after each CREATE (it invalidates the lists): with a
    thousand campaign schemas a fresh migrate costs PostgreSQL 119 ms of CPU checked and 84
    unchecked (bench/bench_migrate_at_scale.py). Every test migrates with the check on, so
    a file that fails it never ships.
Claiming, submitting and releasing are functions so that each is one statement the
worker sends: one round trip and one transaction, every row lock released by the server
itself at the end of the call, never held while the worker waits on the network.

What the functions left is recorded in "<schema>".function_set (0007): a digest of the files
and one of the schema's rows of pg_proc (their row versions: any CREATE OR REPLACE, DROP,
GRANT or REVOKE of a function of the schema changes one). migrate() first reads that row,
the catalog and the recorded migrations in one query, without a lock: when all are as this
code leaves them, there is nothing to do (a resync pass reads one row instead of
re-creating every function); anything else, a function edited, dropped or added by hand
included, takes the path below.

A session-level advisory lock per schema makes concurrent callers (operator passes, test
harnesses) take turns: the second one finds no migration pending and re-applies the same
functions. A schema that records a migration this code does not ship (made by a newer
labelops, or before the 0.1.0 migrations were squashed; matched by number and name) is
refused, not downgraded.

The operator calls migrate() as the campaign's role (after SET ROLE), so the files use
unqualified names and run with search_path set to the schema: everything lands inside it
and is owned by that role. No superuser is needed.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import psycopg
from psycopg import sql

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_FUNCTION_FILE = re.compile(r"^([a-z_][a-z0-9_]*)\.sql$")
_LINE_COMMENT = re.compile(r"--[^\n]*")
_CREATES_ROUTINE = re.compile(
    r"\bCREATE\s+(OR\s+REPLACE\s+)?(FUNCTION|PROCEDURE)\s+([\w.\"]+)\s*\(", re.IGNORECASE
)
# What only migrations may create or change.
_SCHEMA_DDL = re.compile(
    r"\b(CREATE|ALTER|DROP)\s+(TABLE|TYPE|INDEX|SEQUENCE|VIEW|MATERIALIZED\s+VIEW|SCHEMA)\b",
    re.IGNORECASE,
)
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


@dataclass(frozen=True)
class FunctionFile:
    name: str  # the function's name, which is the file's
    sql_text: str


def available_migrations(folder: Traversable | None = None) -> list[Migration]:
    """The migrations shipped with this package (or in `folder`), in the order they apply."""
    found = []
    for entry in (folder or resources.files("labelops.store") / "migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if not match:
            continue
        text = entry.read_text(encoding="utf-8")
        routine = _CREATES_ROUTINE.search(_LINE_COMMENT.sub("", text))
        if routine:
            raise RuntimeError(
                f"migrations/{entry.name} creates the function {routine.group(3)}: functions "
                f"live in functions/<name>.sql only (see labelops.store.migrations)"
            )
        found.append(Migration(int(match.group(1)), match.group(2), text))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migration files share a version number: {versions}")
    return found


def available_functions(folder: Traversable | None = None) -> list[FunctionFile]:
    """The function files shipped with this package (or in `folder`), in the order they
    apply (by name)."""
    found = []
    for entry in (folder or resources.files("labelops.store") / "functions").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FUNCTION_FILE.match(entry.name)
        if not match:
            raise RuntimeError(
                f"functions/{entry.name}: a function file is named <function>.sql, in lower "
                f"case letters, digits and _"
            )
        text = entry.read_text(encoding="utf-8")
        _check_function_file(entry.name, match.group(1), _LINE_COMMENT.sub("", text))
        found.append(FunctionFile(match.group(1), text))
    found.sort(key=lambda f: f.name)
    return found


def _check_function_file(file_name: str, name: str, code: str) -> None:
    routines = _CREATES_ROUTINE.findall(code)
    defined = [routine_name for _, _, routine_name in routines]
    if defined != [name]:
        raise RuntimeError(
            f"functions/{file_name} defines the functions {defined}: it must define exactly "
            f"one, named {name!r} like the file"
        )
    if not routines[0][0]:
        raise RuntimeError(
            f"functions/{file_name} says CREATE FUNCTION {name}: it is re-applied on every "
            f"migrate(), so it must say CREATE OR REPLACE FUNCTION"
        )
    ddl = _SCHEMA_DDL.search(code)
    if ddl:
        raise RuntimeError(
            f"functions/{file_name} has {' '.join(ddl.group(0).split())!r}: tables, types "
            f"and indexes change only in numbered migrations (migrations/NNNN_name.sql)"
        )


@functools.cache
def _shipped() -> tuple[list[Migration], list[FunctionFile], str]:
    """This package's migrations, functions and the functions' digest: read and checked
    once per process (they are package data), not on every pass."""
    functions = available_functions()
    return available_migrations(), functions, files_digest(functions)


def migrate(conn: psycopg.Connection, schema: str, check_bodies: bool = True) -> list[str]:
    """Apply the pending migrations to `schema`, then re-apply every function file; return
    the migrations applied ("0001_initial"; functions are not listed). Nothing is done
    (and no lock taken) when function_set finds the schema as this code leaves it.

    conn must not be inside a transaction. The schema is created when missing (that needs
    CREATE on the database; an operator that pre-creates the schema does not need it).
    check_bodies=False creates the functions with check_function_bodies off (see above).
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("migrate() needs a connection outside any transaction")
    # Read (and checked) before anything is locked or written.
    migrations, functions, digest = _shipped()
    saved_autocommit = conn.autocommit
    conn.autocommit = True
    try:
        if _up_to_date(conn, schema, migrations, digest):
            return []
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_LOCK_NAMESPACE, schema))
        try:
            applied = _apply_pending(conn, schema, migrations)
            _apply_functions(conn, schema, functions, digest, check_bodies)
            return applied
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_LOCK_NAMESPACE, schema))
    finally:
        conn.autocommit = saved_autocommit


def files_digest(functions: list[FunctionFile]) -> str:
    """sha256 of the function files, names and texts, in the order they apply."""
    digest = hashlib.sha256()
    for function in functions:
        for part in (function.name, function.sql_text):
            encoded = part.encode()
            digest.update(len(encoded).to_bytes(8, "big") + encoded)
    return digest.hexdigest()


# A row of pg_proc that CREATE OR REPLACE, GRANT or REVOKE rewrote has a new version.
_ROW_VERSION = "p.xmin::text || ':' || p.ctid::text"
# The schema's functions, found through their dependency on the schema (pg_depend's index
# on the referenced object) rather than by pg_proc.pronamespace, which no index leads with:
# with a thousand campaign schemas pg_proc holds ~20,000 rows, scanned several times by
# every fresh migrate (with regprocedure below: 142 ms of CPU then, 119 ms now, both with
# body checks; bench/bench_migrate_at_scale.py).
_IN_SCHEMA = (
    "p.oid IN (SELECT d.objid FROM pg_depend d WHERE d.refclassid = 'pg_namespace'::regclass"
    " AND d.refobjid = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = {schema})"
    " AND d.classid = 'pg_proc'::regclass)"
)
# The oids and versions of the schema's rows of pg_proc, as one digest.
_CATALOG_DIGEST = (
    "SELECT encode(sha256(convert_to(coalesce(string_agg("
    "p.oid::text || ':' || " + _ROW_VERSION + ", ',' ORDER BY p.oid), ''), 'UTF8')), 'hex')"
    " FROM pg_proc p WHERE " + _IN_SCHEMA
)


def _up_to_date(
    conn: psycopg.Connection, schema: str, migrations: list[Migration], digest: str
) -> bool:
    """Whether the schema records every shipped migration (and no other) and function_set
    says these files were applied and the functions are as they left them."""
    table = sql.Identifier(schema, "function_set")
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table.as_string(conn),)).fetchone()
    if not exists or not exists[0]:
        return False
    row = conn.execute(
        sql.SQL(
            "SELECT f.files_digest = %s AND f.catalog_digest = (" + _CATALOG_DIGEST + "),"
            " (SELECT array_agg(m.version || ':' || m.name ORDER BY m.version) FROM {migrations} m)"
            " FROM {table} f"
        ).format(
            schema=sql.Literal(schema),
            migrations=sql.Identifier(schema, "schema_migrations"),
            table=table,
        ),
        (digest,),
    ).fetchone()
    if row is None or not row[0]:
        return False
    return list(row[1] or []) == [f"{m.version}:{m.name}" for m in migrations]


def applied_migrations(conn: psycopg.Connection, schema: str) -> dict[int, str]:
    """version -> name of the migrations recorded in the schema's schema_migrations (empty
    when it has none yet)."""
    exists = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL",
        (sql.Identifier(schema, "schema_migrations").as_string(conn),),
    ).fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(
        sql.SQL("SELECT version, name FROM {}").format(sql.Identifier(schema, "schema_migrations"))
    ).fetchall()
    return {version: name for version, name in rows}


def _apply_pending(conn: psycopg.Connection, schema: str, migrations: list[Migration]) -> list[str]:
    _ensure_bookkeeping(conn, schema)
    recorded = applied_migrations(conn, schema)
    # By version and name: a version number that meant another migration (as 0002 did
    # before the squash) is as foreign as one never shipped.
    shipped = {m.version: m.name for m in migrations}
    unknown = sorted(
        f"{version:04d}_{name}"
        for version, name in recorded.items()
        if shipped.get(version) != name
    )
    if unknown:
        raise RuntimeError(
            f"schema {schema} records migrations {unknown} that this labelops does not ship "
            f"(it ships {[m.label for m in migrations]}): the schema was made by a newer "
            f"labelops, or before the 0.1.0 migrations were squashed; it is not downgraded"
        )
    done = recorded.keys()
    applied = []
    for migration in migrations:
        if migration.version in done:
            continue
        with conn.transaction():
            _set_search_path(conn, schema)
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


def _apply_functions(
    conn: psycopg.Connection,
    schema: str,
    functions: list[FunctionFile],
    digest: str,
    check_bodies: bool = True,
) -> None:
    with conn.transaction():
        _set_search_path(conn, schema)
        if not check_bodies:
            conn.execute("SET LOCAL check_function_bodies = off")
        before = _function_versions(conn, schema)
        for function in functions:
            _apply_function(conn, schema, function)
        after = _function_versions(conn, schema)
        # A row of pg_proc that CREATE OR REPLACE rewrote has a new xmin; one no file
        # touched keeps the version it had before.
        untouched = {oid for oid, version in after.items() if before.get(oid) == version}
        defined = sorted({after[oid][1] for oid in after.keys() - untouched})
        expected = [f.name for f in functions]
        if defined != expected:
            raise RuntimeError(
                f"the function files {expected} defined the functions {defined} in schema "
                f"{schema}: each file must define the one function it is named after"
            )
        for oid in sorted(untouched):
            conn.execute(b"DROP FUNCTION " + after[oid][2].encode())
        # New functions come with EXECUTE for PUBLIC; replaced ones keep their privileges.
        conn.execute(
            sql.SQL("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {} FROM PUBLIC").format(
                sql.Identifier(schema)
            )
        )
        # Last: the catalog as this transaction leaves it.
        conn.execute(
            sql.SQL(
                "INSERT INTO {table} (files_digest, catalog_digest) VALUES (%s, ("
                + _CATALOG_DIGEST
                + ")) ON CONFLICT (only_row) DO UPDATE SET files_digest = EXCLUDED.files_digest,"
                " catalog_digest = EXCLUDED.catalog_digest, applied_at = now()"
            ).format(table=sql.Identifier(schema, "function_set"), schema=sql.Literal(schema)),
            (digest,),
        )


def _apply_function(conn: psycopg.Connection, schema: str, function: FunctionFile) -> None:
    try:
        with conn.transaction():  # a savepoint: a refusal leaves the old function in place
            conn.execute(function.sql_text.encode())
    except psycopg.errors.InvalidFunctionDefinition:
        # "cannot change return type of existing function", or a parameter's name or
        # default: only a new function can have those, so the old one goes first.
        for signature in _signatures(conn, schema, function.name):
            conn.execute(b"DROP FUNCTION " + signature.encode())
        conn.execute(function.sql_text.encode())


def _function_versions(conn: psycopg.Connection, schema: str) -> dict[int, tuple[str, str, str]]:
    """oid -> (row version, name, signature) of every function in the schema."""
    rows = conn.execute(
        # The signature built from the identity arguments, schema-qualified: oid::regprocedure
        # would check the function's visibility, reading every function of its name in the
        # database, one per campaign schema.
        sql.SQL(
            "SELECT p.oid::bigint, " + _ROW_VERSION + ", p.proname,"
            " format('%I.%I(%s)', {schema}::text, p.proname,"
            " pg_get_function_identity_arguments(p.oid))"
            " FROM pg_proc p WHERE " + _IN_SCHEMA
        ).format(schema=sql.Literal(schema)),
    ).fetchall()
    return {oid: (version, name, signature) for oid, version, name, signature in rows}


def _signatures(conn: psycopg.Connection, schema: str, name: str) -> list[str]:
    return [
        signature
        for _, function_name, signature in _function_versions(conn, schema).values()
        if function_name == name
    ]


def _set_search_path(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))


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
