"""Upgrade: today's migrate() over a schema the previous release left, holding its data.

The previous release's schema is a frozen file (tests/fixtures/schema_v0_1_0/schema.sql);
the data is written by that release's own functions, as its workers would have. After
migrate() the data must be intact, the schema must be the one a fresh migrate() makes, and
today's store code must claim and submit on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from schema_catalog import schema_shape
from test_store_support import make_config, migrated_schema, open_pool, unique_name

from labelops.store import LabelStore
from labelops.store.active_leases import ActiveLeases
from labelops.store.migrations import available_migrations, migrate
from labelops.store.progress import ProgressCounts

pytestmark = pytest.mark.integration

PREVIOUS_RELEASE = Path(__file__).parents[1] / "fixtures" / "schema_v0_1_0" / "schema.sql"
# The migrations the previous release had applied (its schema_migrations rows).
PREVIOUS_VERSIONS = {1}
TABLES = (
    "schema_migrations",
    "items",
    "leases",
    "skips",
    "labels",
    "outbox",
    "dead_letters",
    "labeler_days",
    "progress_shards",
)
HELPFUL = {"choice": "helpful"}
LABELS_PER_ITEM = 2


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn) as opened:
        yield opened


@pytest.fixture
def previous_schema(postgres_dsn: str) -> Iterator[str]:
    """A schema as the previous release made it, with items, labels, held, lapsed and
    released leases, outbox rows and a dead letter in it."""
    schema = unique_name("upg")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
            conn.execute(PREVIOUS_RELEASE.read_text(encoding="utf-8").encode())
        write_previous_release_data(conn, schema)
    try:
        yield schema
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def write_previous_release_data(conn: psycopg.Connection[Any], schema: str) -> None:
    def call(function: str, *args: Any) -> str:
        placeholders = sql.SQL(", ").join(sql.Placeholder() * len(args))
        statement = sql.SQL("SELECT verdict FROM {}({})").format(
            sql.Identifier(schema, function), placeholders
        )
        row = conn.execute(statement, args).fetchone()
        assert row is not None
        return str(row[0])

    def claim(labeler: str, lease_seconds: float = 600) -> str:
        return call("claim_task", labeler, LABELS_PER_ITEM, lease_seconds, 500, 5, 100)

    conn.execute(
        sql.SQL(
            "INSERT INTO {} (external_id, payload, priority)"
            " SELECT 'item-' || i, jsonb_build_object('text', 'text ' || i), 0"
            " FROM generate_series(0, 4) AS i ORDER BY i"
        ).format(sql.Identifier(schema, "items"))
    )
    conn.execute(
        sql.SQL("UPDATE {} SET items_total = 5 WHERE shard = 0").format(
            sql.Identifier(schema, "progress_shards")
        )
    )
    name = schema.replace("_", "-")  # as make_config names the campaign
    assert claim("ann") == "claimed"  # item-0
    accepted = call(
        "accept_label",
        "item-0",
        "ann",
        LABELS_PER_ITEM,
        500,
        Jsonb(HELPFUL),
        "human",
        "key-1",
        "tests",
        name,
        0,
    )
    assert accepted == "accepted"
    assert claim("bob") == "claimed", "bob holds the second slot of item-0"
    assert claim("cid") == "claimed", "cid gets item-1 and releases it"
    released = conn.execute(
        sql.SQL("SELECT item_found, had_lease FROM {}(%s, %s)").format(
            sql.Identifier(schema, "release_task")
        ),
        ("item-1", "cid"),
    ).fetchone()
    assert released == (True, True)
    assert claim("dee", lease_seconds=0.001) == "claimed", "dee's lease on item-1 lapses"
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (source_topic, source_partition, source_offset, raw_value, reason)"
            " VALUES ('test.items', 0, 7, 'not json', 'the message is not JSON')"
        ).format(sql.Identifier(schema, "dead_letters"))
    )


def previous_columns(conn: psycopg.Connection[Any], schema: str) -> dict[str, list[str]]:
    """The columns of each table, in order, as the schema has them now."""
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = %s ORDER BY table_name, ordinal_position",
        (schema,),
    ).fetchall()
    columns: dict[str, list[str]] = {table: [] for table in TABLES}
    for table, column in rows:
        columns[table].append(column)
    return columns


def table_rows(
    conn: psycopg.Connection[Any], schema: str, columns: dict[str, list[str]]
) -> dict[str, list[str]]:
    """Every row of every table of the previous release, as text, in those columns only:
    newer migrations may add columns (with their defaults) and rows, not change these."""
    return {
        table: [
            row[0]
            for row in conn.execute(
                sql.SQL("SELECT ROW({})::text FROM {} ORDER BY 1").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns[table])),
                    sql.Identifier(schema, table),
                )
            ).fetchall()
        ]
        for table in TABLES
    }


def counter_mismatches(conn: psycopg.Connection[Any], schema: str) -> list[Any]:
    """Items whose label_count or lease_count disagree with their labels and leases."""
    return conn.execute(
        sql.SQL(
            "SELECT i.external_id, i.label_count, i.lease_count FROM {items} i"
            " WHERE i.label_count <> (SELECT count(*) FROM {labels} l WHERE l.item_id = i.id)"
            "    OR i.lease_count <> (SELECT count(*) FROM {leases} l"
            "                         WHERE l.item_id = i.id AND l.reserved)"
        ).format(
            items=sql.Identifier(schema, "items"),
            labels=sql.Identifier(schema, "labels"),
            leases=sql.Identifier(schema, "leases"),
        )
    ).fetchall()


def test_migrate_applies_over_the_previous_release_and_keeps_its_data(
    postgres_dsn: str, previous_schema: str
) -> None:
    newer = [m.label for m in available_migrations() if m.version not in PREVIOUS_VERSIONS]
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        columns = previous_columns(conn, previous_schema)
        before = table_rows(conn, previous_schema, columns)
        assert len(before["labels"]) == 1 and len(before["leases"]) == 2
        assert len(before["outbox"]) == 1 and len(before["skips"]) == 1

        assert migrate(conn, previous_schema) == newer
        after = table_rows(conn, previous_schema, columns)
        # Besides new columns, a migration adds only its own row of schema_migrations.
        recorded = after.pop("schema_migrations")
        assert set(before.pop("schema_migrations")) <= set(recorded)
        assert len(recorded) == len(PREVIOUS_VERSIONS) + len(newer)
        assert after == before
        assert counter_mismatches(conn, previous_schema) == []


def test_an_upgraded_schema_is_the_one_a_fresh_migrate_makes(
    postgres_dsn: str, previous_schema: str
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        migrate(conn, previous_schema)
        with migrated_schema(postgres_dsn, "fresh") as fresh:
            assert schema_shape(conn, previous_schema) == schema_shape(conn, fresh)


def test_claim_and_submit_work_on_the_upgraded_data(
    postgres_dsn: str, previous_schema: str, pool: ConnectionPool[Any]
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        migrate(conn, previous_schema)
        [(old_label_id,)] = conn.execute(
            sql.SQL("SELECT id::text FROM {}").format(sql.Identifier(previous_schema, "labels"))
        ).fetchall()
    store = LabelStore(pool, make_config(previous_schema, labels_per_item=LABELS_PER_ITEM))
    # Bob's lease counts as active; dee's lapsed one, not reaped yet, does not.
    assert store.active_leases() == ActiveLeases(leases=1, labelers=1)

    # A retry of the label the previous release accepted is answered with that label.
    replay = store.submit("ann", "item-0", HELPFUL, idempotency_key="key-1")
    assert (replay.replayed, replay.label_id) == (True, old_label_id)
    # The lease bob took before the upgrade completes the item.
    assert store.submit("bob", "item-0", HELPFUL).item_completed
    # cid released item-1 before the upgrade and is not offered it again.
    task = store.claim("cid")
    assert task is not None and task.item_id == "item-2"
    result, following = store.submit_and_claim("cid", "item-2", HELPFUL)
    assert not result.replayed
    assert following is not None and not isinstance(following, Exception)
    assert following.item_id == "item-3"
    # dee's lapsed lease on item-1 still counts: a slot is free that nobody else holds.
    assert not store.submit("dee", "item-1", HELPFUL).item_completed
    assert store.release("cid", "item-3")
    assert store.active_leases() == ActiveLeases(leases=0, labelers=0)

    assert store.progress() == ProgressCounts(
        items_total=5, items_completed=1, labels=4, human_labeled=4
    )
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        assert counter_mismatches(conn, previous_schema) == []
        outbox = conn.execute(
            sql.SQL("SELECT message->>'itemId', message->>'ordinal' FROM {} ORDER BY id").format(
                sql.Identifier(previous_schema, "outbox")
            )
        ).fetchall()
    assert outbox == [("item-0", "1"), ("item-0", "2"), ("item-2", "1"), ("item-1", "1")]
