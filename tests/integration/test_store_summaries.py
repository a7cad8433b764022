"""The operator's O(1) status read on real Postgres: counters with the new columns, the
latest model version, the quality summary and the blocks after a watermark."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from labelops.store.migrations import migrate
from labelops.store.progress import CounterDelta, bump_counters
from labelops.store.summaries import read_campaign

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def conn(postgres_dsn: str) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    schema = f"t_summaries_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        migrate(connection, schema)
        try:
            yield connection, schema
        finally:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_a_fresh_schema_reads_as_empty(conn: tuple[psycopg.Connection[Any], str]) -> None:
    connection, schema = conn
    reading = read_campaign(connection, schema, None)
    assert reading.model is None and reading.new_blocks == []
    assert reading.quality is not None and reading.quality.alpha is None
    assert reading.counts.gold_items == 0


def test_reads_the_new_counters_the_latest_version_and_new_blocks(
    conn: tuple[psycopg.Connection[Any], str],
) -> None:
    connection, schema = conn
    with connection.transaction(), connection.cursor() as cur:
        for _ in range(3):
            bump_counters(
                cur, schema, CounterDelta(items_total=2, gold_items=1, scored_by_people=1)
            )
    t = sql.Identifier
    connection.execute(
        sql.SQL(
            "INSERT INTO {} (version, first_seen_at, threshold, trusted, audits, audits_correct,"
            " lower_bound, message) VALUES ('v1', %s, 0.9, true, 70, 69, 0.96, 'old'),"
            " ('v2', %s, NULL, false, 12, 12, NULL, 'calibrating')"
        ).format(t(schema, "model_versions")),
        (T0, T0 + dt.timedelta(minutes=5)),
    )
    connection.execute(
        sql.SQL(
            "UPDATE {} SET alpha = 0.62, alpha_level = 'nominal', gold_answers = 40,"
            " gold_correct = 31, labelers_blocked = 2"
        ).format(t(schema, "quality_summary"))
    )
    connection.execute(
        sql.SQL(
            "INSERT INTO {} (labeler, blocked_at, blocked_reason) VALUES"
            " ('ann', %s, 'gold'), ('bob', %s, 'gold'), ('cid', %s, 'listed'), ('dee', NULL, NULL)"
        ).format(t(schema, "labeler_quality")),
        (T0, T0, T0 + dt.timedelta(seconds=1)),
    )

    reading = read_campaign(connection, schema, None)
    assert (reading.counts.items_total, reading.counts.gold_items) == (6, 3)
    assert reading.counts.scored_by_people == 3
    assert reading.model is not None and reading.model.version == "v2"
    assert reading.model.threshold is None and reading.model.audits == 12
    assert reading.quality is not None
    assert (reading.quality.gold_answers, reading.quality.gold_correct) == (40, 31)
    assert [b.labeler for b in reading.new_blocks] == ["ann", "bob", "cid"]

    # Strictly after (blocked_at, labeler): ann's twin timestamp does not hide bob.
    after_ann = read_campaign(connection, schema, (T0, "ann")).new_blocks
    assert [b.labeler for b in after_ann] == ["bob", "cid"]
    last = reading.new_blocks[-1]
    assert read_campaign(connection, schema, (last.blocked_at, last.labeler)).new_blocks == []
