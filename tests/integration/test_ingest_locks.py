"""Arrival locks on the real PostgreSQL: prediction batches of different buckets go on at
the same time; an item and a prediction of one bucket wait for each other."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from test_store_support import migrated_schema

from labelops.store.items import arrival_bucket, lock_arrivals, statements_for

pytestmark = pytest.mark.integration


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "locks") as name:
        yield name


def two_ids(same_bucket: bool) -> tuple[str, str]:
    first = "item-0"
    n = 1
    while (arrival_bucket(f"item-{n}".encode()) == arrival_bucket(first.encode())) != same_bucket:
        n += 1
    return first, f"item-{n}"


def locks_at_once(
    dsn: str, schema: str, first: dict[str, list[str]], second: dict[str, list[str]]
) -> bool:
    """Whether a second transaction gets its arrival locks while the first holds its own."""
    statements = statements_for(schema)
    with psycopg.connect(dsn) as holder, psycopg.connect(dsn) as other:
        with holder.cursor() as cur:
            lock_arrivals(cur, statements, **first)
        other.execute("SET lock_timeout = '300ms'")
        try:
            with other.cursor() as cur:
                lock_arrivals(cur, statements, **second)
        except psycopg.errors.LockNotAvailable:
            return False
        return True


def test_predictions_of_other_buckets_do_not_wait(postgres_dsn: str, schema: str) -> None:
    a, b = two_ids(same_bucket=False)
    assert locks_at_once(postgres_dsn, schema, {"predictions": [a]}, {"predictions": [b]})


def test_an_item_waits_for_a_prediction_of_its_bucket(postgres_dsn: str, schema: str) -> None:
    a, b = two_ids(same_bucket=True)
    assert not locks_at_once(postgres_dsn, schema, {"predictions": [a]}, {"items": [b]})
    assert not locks_at_once(postgres_dsn, schema, {"items": [a]}, {"predictions": [b]})
    # Item batches share their locks.
    assert locks_at_once(postgres_dsn, schema, {"items": [a]}, {"items": [b]})
