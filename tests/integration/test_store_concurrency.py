"""Exactly N labels per item under concurrency, and counters that equal full counts."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from psycopg_pool import ConnectionPool
from test_store_support import add_items, make_config, migrated_schema, open_pool, query

from labelops.store import ClaimedTask, LabelStore
from labelops.store.errors import Conflict, InvalidLabel
from labelops.store.progress import ProgressCounts

pytestmark = pytest.mark.integration

LABELERS = [f"labeler-{n:02d}" for n in range(32)]
CHOICES = ["helpful", "unhelpful"]


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "conc") as name:
        yield name


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn, size=len(LABELERS)) as opened:
        yield opened


def run_concurrently(work: Callable[[str], None]) -> None:
    """work(labeler) in one thread per labeler, all released at once; re-raise failures."""
    start = threading.Barrier(len(LABELERS))
    failures: list[BaseException] = []

    def main(labeler: str) -> None:
        start.wait()
        try:
            work(labeler)
        except BaseException as err:  # collected and re-raised in the test's thread
            failures.append(err)

    threads = [threading.Thread(target=main, args=(labeler,)) for labeler in LABELERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not failures, failures


def assert_exactly_n_labels(pool: ConnectionPool[Any], schema: str, n: int, items: int) -> None:
    per_item = query(
        pool,
        schema,
        "SELECT i.external_id, i.label_count, count(l.id), count(DISTINCT l.labeler),"
        "       array_agg(l.ordinal ORDER BY l.ordinal), i.completed_at IS NOT NULL"
        " FROM {schema}.items i LEFT JOIN {schema}.labels l ON l.item_id = i.id"
        " GROUP BY i.id",
    )
    assert len(per_item) == items
    wrong = [row for row in per_item if row[1:] != (n, n, n, list(range(1, n + 1)), True)]
    assert not wrong, f"items without exactly {n} labels from {n} labelers: {wrong[:5]}"


def assert_lease_counts_match(pool: ConnectionPool[Any], schema: str) -> None:
    drifted = query(
        pool,
        schema,
        "SELECT i.external_id, i.lease_count, count(l.item_id) FROM {schema}.items i"
        " LEFT JOIN {schema}.leases l ON l.item_id = i.id AND l.reserved"
        " GROUP BY i.id HAVING i.lease_count <> count(l.item_id)",
    )
    assert not drifted, f"items whose lease_count is not their reserved leases: {drifted[:5]}"


def lease_to_everyone(
    pool: ConnectionPool[Any], schema: str, ids: list[str], live_per_item: int
) -> dict[str, set[str]]:
    """Every labeler holds a lease on every item: per item, live_per_item random labelers'
    leases are live, the others' lapsed and reaped (their slots went back to the pool).
    Returns each item's live holders."""
    live = {item_id: set(random.sample(LABELERS, live_per_item)) for item_id in ids}
    for item_id, holders in live.items():
        query(
            pool,
            schema,
            "WITH leases AS ("
            "  INSERT INTO {schema}.leases (item_id, labeler, claimed_at, expires_at, reserved)"
            "  SELECT i.id, l, now(), now() + interval '1 hour', l = ANY(%s)"
            "  FROM {schema}.items i, unnest(%s::text[]) AS l WHERE i.external_id = %s"
            "  RETURNING item_id, reserved)"
            " UPDATE {schema}.items SET lease_count = (SELECT count(*) FROM leases WHERE reserved)"
            " WHERE external_id = %s RETURNING lease_count",
            list(holders),
            LABELERS,
            item_id,
            item_id,
        )
    return live


def claim_until_none_is_left(
    store: LabelStore, pool: ConnectionPool[Any], schema: str, labeler: str, n: int
) -> ClaimedTask | None:
    """store.claim, claimed again while the labeler may still have a task: claims pass over
    items a concurrent submission holds locked (SKIP LOCKED), so a None can be momentary.
    Without releases a slot never reopens, so None with no room left is final."""
    while (task := store.claim(labeler)) is None and room_left_for(pool, schema, labeler, n):
        pass
    return task


def room_left_for(pool: ConnectionPool[Any], schema: str, labeler: str, n: int) -> bool:
    [(room,)] = query(
        pool,
        schema,
        "SELECT EXISTS (SELECT 1 FROM {schema}.items i"
        " WHERE i.completed_at IS NULL AND i.label_count + i.lease_count < %s"
        "   AND NOT EXISTS (SELECT 1 FROM {schema}.labels l"
        "                   WHERE l.item_id = i.id AND l.labeler = %s)"
        "   AND NOT EXISTS (SELECT 1 FROM {schema}.leases l"
        "                   WHERE l.item_id = i.id AND l.labeler = %s AND l.reserved))",
        n,
        labeler,
        labeler,
    )
    return bool(room)


def assert_race_outcome(
    pool: ConnectionPool[Any],
    schema: str,
    store: LabelStore,
    n: int,
    live: dict[str, set[str]],
    accepted: list[tuple[str, str]],
    refusals: Counter[str],
) -> None:
    """After every labeler submitted to every item of lease_to_everyone's setup: exactly N
    labels each, every live lease among them, and the rest refused for the right reason."""
    items = len(live)
    assert_exactly_n_labels(pool, schema, n, items)
    by_item: dict[str, set[str]] = {}
    for item_id, labeler in accepted:
        by_item.setdefault(item_id, set()).add(labeler)
    for item_id, holders in live.items():
        assert holders <= by_item[item_id], f"a live lease on {item_id} lost its slot"
    assert len(accepted) == n * items
    assert set(refusals) <= {"item_full", "lease_expired"}
    assert refusals.total() == len(LABELERS) * items - n * items
    assert_lease_counts_match(pool, schema)
    assert store.progress() == full_counts(pool, schema, n, rejected=0)


def full_counts(pool: ConnectionPool[Any], schema: str, n: int, rejected: int) -> ProgressCounts:
    """The counters recomputed from the tables, the slow way."""
    [(items, completed, labels, human, machine)] = query(
        pool,
        schema,
        "SELECT (SELECT count(*) FROM {schema}.items),"
        "       (SELECT count(*) FROM {schema}.items WHERE label_count >= %s),"
        "       (SELECT count(*) FROM {schema}.labels),"
        "       (SELECT count(*) FROM {schema}.labels WHERE origin = 'human'),"
        "       (SELECT count(*) FROM {schema}.labels WHERE origin = 'machine')",
        n,
    )
    return ProgressCounts(items, completed, labels, human, machine, rejected, 0)


def test_32_labelers_claiming_and_submitting_give_every_item_exactly_n_labels(
    pool: ConnectionPool[Any], schema: str
) -> None:
    n, items = 3, 150
    store = LabelStore(pool, make_config(schema, labels_per_item=n, max_leases=2))
    add_items(pool, schema, items, priority=lambda i: i % 4)
    rejected = Counter[str]()

    def label_until_nothing_is_left(labeler: str) -> None:
        rng = random.Random(labeler)
        while (task := claim_until_none_is_left(store, pool, schema, labeler, n)) is not None:
            if rng.random() < 0.1:
                with pytest.raises(InvalidLabel):
                    store.submit(labeler, task.item_id, {"choice": "no such choice"})
                rejected[labeler] += 1
            store.submit(labeler, task.item_id, {"choice": rng.choice(CHOICES)})

    run_concurrently(label_until_nothing_is_left)

    assert_exactly_n_labels(pool, schema, n, items)
    assert query(pool, schema, "SELECT count(*) FROM {schema}.leases") == [(0,)]
    assert_lease_counts_match(pool, schema)
    assert query(pool, schema, "SELECT sum(labels) FROM {schema}.labeler_days") == [(n * items,)]
    assert query(pool, schema, "SELECT count(*) FROM {schema}.outbox") == [(n * items,)]
    counters = store.progress()
    assert counters == full_counts(pool, schema, n, rejected.total())
    assert counters.items_completed == items


def test_racing_submissions_never_exceed_n_nor_take_a_promised_slot(
    pool: ConnectionPool[Any], schema: str
) -> None:
    """Per item, 2 labelers hold live leases and the other 30 hold leases that lapsed
    (reaped: their slots went back to the pool). All 32 submit to every item at once: the
    two live leases must succeed and exactly one lapsed lease gets the free third slot."""
    n, items = 3, 10
    store = LabelStore(pool, make_config(schema, labels_per_item=n))
    ids = add_items(pool, schema, items)
    live = lease_to_everyone(pool, schema, ids, live_per_item=2)
    accepted: list[tuple[str, str]] = []
    refusals = Counter[str]()

    def submit_everywhere(labeler: str) -> None:
        for item_id in random.sample(ids, len(ids)):
            try:
                store.submit(labeler, item_id, {"choice": "helpful"})
                accepted.append((item_id, labeler))
            except Conflict as err:
                refusals[err.reason] += 1

    run_concurrently(submit_everywhere)

    assert_race_outcome(pool, schema, store, n, live, accepted, refusals)


def test_exactly_n_holds_with_skips_and_lapsing_leases(
    pool: ConnectionPool[Any], schema: str
) -> None:
    """Slow labelers whose leases lapse (0.2 s) and labelers who skip, all at once: the
    items still end with exactly N labels and the counts stay true."""
    n, items = 3, 60
    store = LabelStore(pool, make_config(schema, labels_per_item=n, lease_seconds=0.2))
    add_items(pool, schema, items)
    deadline = time.monotonic() + 120

    def all_complete() -> bool:
        return store.progress().items_completed == items

    def label_with_chaos(labeler: str) -> None:
        rng = random.Random(labeler)
        while time.monotonic() < deadline:
            task = store.claim(labeler)
            if task is None:
                if all_complete():
                    return
                time.sleep(0.05)  # others hold the remaining slots: poll again
                continue
            action = rng.random()
            if action < 0.15:
                store.release(labeler, task.item_id)
                continue
            if action < 0.35:
                time.sleep(0.3)  # a slow labeler: the lease lapses before the submit
            try:
                store.submit(labeler, task.item_id, {"choice": rng.choice(CHOICES)})
            except Conflict as err:
                assert err.reason in {"lease_expired", "item_full"}, err

    run_concurrently(label_with_chaos)

    assert all_complete()
    assert_exactly_n_labels(pool, schema, n, items)
    assert_lease_counts_match(pool, schema)
    assert store.progress() == full_counts(pool, schema, n, rejected=0)
