"""Group commit (labelops.store.batching) against the real PostgreSQL: several batchers
committing at once, as several worker processes and replicas do, keep exactly N, the lease
and progress counters exact, and every submission's own verdict."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from test_store_concurrency import (
    LABELERS,
    assert_exactly_n_labels,
    assert_lease_counts_match,
    assert_race_outcome,
    claim_until_none_is_left,
    full_counts,
    lease_to_everyone,
)
from test_store_support import add_items, make_config, migrated_schema, open_pool, query

from labelops.api.worker_configmap import WorkerConfig
from labelops.store import ClaimedTask, LabelStore
from labelops.store.batching import ClaimBatcher, LabelBatcher
from labelops.store.errors import Conflict, NotFound, QuotaExceeded
from labelops.store.queries import Queries
from labelops.store.results import LabelOrigin
from labelops.store.submissions import Submission, Submitted

pytestmark = pytest.mark.integration

BATCHERS = 3
AsyncPool = AsyncConnectionPool[Any]


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "batch") as name:
        yield name


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn, size=len(LABELERS)) as opened:
        yield opened


@asynccontextmanager
async def async_pools(dsn: str, count: int, size: int) -> AsyncIterator[list[AsyncPool]]:
    pools = [
        AsyncConnectionPool(
            dsn, min_size=size, max_size=size, open=False, kwargs={"autocommit": True}
        )
        for _ in range(count)
    ]
    for opened in pools:
        await opened.open(wait=True, timeout=30)
    try:
        yield pools
    finally:
        for opened in pools:
            await opened.close()


@asynccontextmanager
async def batchers(
    dsn: str, config: WorkerConfig, count: int, writers: int = 2
) -> AsyncIterator[list[LabelBatcher]]:
    """count LabelBatchers, as count worker processes have, each with its own pool."""
    async with async_pools(dsn, count, writers) as pools:
        yield [LabelBatcher(p, config, Queries(config.schema_), writers) for p in pools]


@asynccontextmanager
async def claim_batchers(
    dsn: str, config: WorkerConfig, count: int, writers: int = 2
) -> AsyncIterator[list[ClaimBatcher]]:
    async with async_pools(dsn, count, writers) as pools:
        yield [ClaimBatcher(p, config, Queries(config.schema_), writers) for p in pools]


def submission(
    labeler: str, item_id: str, value: Any, *, key: str | None = None, lease_next: bool = False
) -> Submission:
    return Submission(labeler, item_id, value, key, LabelOrigin.HUMAN, lease_next)


async def gather_outcomes(
    batcher: LabelBatcher, subs: list[Submission]
) -> list[Submitted | BaseException]:
    """Submitted all at once, so they queue together and go in one batch."""
    return await asyncio.gather(*(batcher.submit(s) for s in subs), return_exceptions=True)


def test_concurrent_batches_keep_exactly_n_and_every_counter_exact(
    postgres_dsn: str, pool: ConnectionPool[Any], schema: str
) -> None:
    n, items = 3, 150
    config = make_config(schema, labels_per_item=n, max_leases=2)
    store = LabelStore(pool, config)
    add_items(pool, schema, items, priority=lambda i: i % 4)

    async def main() -> list[LabelBatcher]:
        # One writer each: batches grow while one commits, and 3 still commit at once.
        async with batchers(postgres_dsn, config, BATCHERS, writers=1) as group:

            async def label_until_nothing_is_left(labeler: str) -> None:
                rng = random.Random(labeler)
                claim = claim_until_none_is_left
                task = await asyncio.to_thread(claim, store, pool, schema, labeler, n)
                while task is not None:
                    # Any labeler's label may go through any batcher, as when a labeler's
                    # requests reach different processes or replicas.
                    batcher = rng.choice(group)
                    with_next = rng.random() < 0.5
                    value = {"choice": rng.choice(["helpful", "unhelpful"])}
                    done = await batcher.submit(
                        submission(labeler, task.item_id, value, lease_next=with_next)
                    )
                    assert not done.result.replayed
                    if with_next:
                        assert done.claimed
                        upcoming = done.next_lease
                        assert not isinstance(upcoming, Exception), upcoming
                        task = upcoming[0] if upcoming is not None else None
                        if task is None:  # the lease passed over a locked item, perhaps
                            task = await asyncio.to_thread(claim, store, pool, schema, labeler, n)
                    else:
                        task = await asyncio.to_thread(claim, store, pool, schema, labeler, n)

            await asyncio.gather(*(label_until_nothing_is_left(lab) for lab in LABELERS))
            return group

    group = asyncio.run(main())

    assert_exactly_n_labels(pool, schema, n, items)
    assert query(pool, schema, "SELECT count(*) FROM {schema}.leases") == [(0,)]
    assert_lease_counts_match(pool, schema)
    assert query(pool, schema, "SELECT sum(labels) FROM {schema}.labeler_days") == [(n * items,)]
    assert query(pool, schema, "SELECT count(*) FROM {schema}.outbox") == [(n * items,)]
    assert store.progress() == full_counts(pool, schema, n, rejected=0)
    # The test means something only if labels did share batches.
    assert max(b.largest_batch for b in group) > 1


def test_racing_batches_never_exceed_n_nor_take_a_promised_slot(
    postgres_dsn: str, pool: ConnectionPool[Any], schema: str
) -> None:
    """As test_store_concurrency's race, through batchers: per item 2 labelers hold live
    leases and 30 hold lapsed ones; all submit to every item at once."""
    n, items = 3, 10
    config = make_config(schema, labels_per_item=n)
    store = LabelStore(pool, config)
    ids = add_items(pool, schema, items)
    live = lease_to_everyone(pool, schema, ids, live_per_item=2)
    accepted: list[tuple[str, str]] = []
    refusals = Counter[str]()

    async def main() -> None:
        async with batchers(postgres_dsn, config, BATCHERS) as group:

            async def submit_everywhere(labeler: str) -> None:
                rng = random.Random(labeler)
                for item_id in rng.sample(ids, len(ids)):
                    try:
                        await rng.choice(group).submit(
                            submission(labeler, item_id, {"choice": "helpful"})
                        )
                        accepted.append((item_id, labeler))
                    except Conflict as err:
                        refusals[err.reason] += 1

            await asyncio.gather(*(submit_everywhere(lab) for lab in LABELERS))

    asyncio.run(main())

    assert_race_outcome(pool, schema, store, n, live, accepted, refusals)


def test_each_submission_of_a_batch_gets_its_own_verdict(
    postgres_dsn: str, pool: ConnectionPool[Any], schema: str
) -> None:
    config = make_config(schema, labels_per_item=1, max_leases=5)
    store = LabelStore(pool, config)
    add_items(pool, schema, 6)
    tasks = [store.claim("ann"), store.claim("ann"), store.claim("bob")]
    assert all(isinstance(t, ClaimedTask) for t in tasks)
    first, second, bobs = (t.item_id for t in tasks if t is not None)
    value = {"choice": "helpful"}
    subs = [
        submission("ann", first, value, key="k-1"),
        # The same submission again (a client retry): the label the first one wrote.
        submission("ann", first, value, key="k-1"),
        # The same key for another item: refused, and nothing leased for it.
        submission("ann", second, value, key="k-1", lease_next=True),
        submission("ann", "no-such-item", value),
        # bob's item is full after his label; ann's second label on it is refused.
        submission("bob", bobs, value, lease_next=True),
        submission("ann", bobs, value),
    ]

    async def main() -> tuple[list[Submitted | BaseException], LabelBatcher]:
        async with batchers(postgres_dsn, config, 1, writers=1) as (batcher,):
            return await gather_outcomes(batcher, subs), batcher

    outcomes, batcher = asyncio.run(main())

    assert (batcher.batches, batcher.largest_batch) == (1, len(subs))
    accepted, replayed, reused, unknown, bob, late = outcomes
    assert isinstance(accepted, Submitted) and not accepted.result.replayed
    assert isinstance(replayed, Submitted) and replayed.result.replayed
    assert replayed.result.label_id == accepted.result.label_id
    assert isinstance(reused, Conflict) and reused.reason == "idempotency_key_reused"
    assert isinstance(unknown, NotFound)
    assert isinstance(bob, Submitted) and bob.claimed
    assert isinstance(bob.next_lease, tuple) and bob.next_lease[0].item_id not in (first, bobs)
    assert isinstance(late, Conflict) and late.reason == "item_full"
    assert query(pool, schema, "SELECT count(*) FROM {schema}.labels") == [(2,)]
    # ann's lease on `second` is still hers: the refused submission leased nothing new.
    assert query(
        pool,
        schema,
        "SELECT count(*) FROM {schema}.leases WHERE labeler = 'ann' AND reserved",
    ) == [(1,)]
    assert store.progress() == full_counts(pool, schema, 1, rejected=0)


def test_a_submission_the_database_refuses_fails_alone(
    postgres_dsn: str, pool: ConnectionPool[Any], schema: str
) -> None:
    """An error aborts the whole statement; the batcher then retries each submission alone,
    so only the one at fault fails. (The worker validates values before this point; a NUL
    character, which jsonb refuses, stands in for whatever else the database might raise.)"""
    config = make_config(schema, labels_per_item=1, max_leases=5)
    store = LabelStore(pool, config)
    add_items(pool, schema, 4)
    leased = [store.claim(f"labeler-{n}") for n in range(4)]
    subs = [
        submission(f"labeler-{n}", t.item_id, {"choice": "helpful"})
        for n, t in enumerate(leased)
        if t is not None
    ]
    subs[2] = submission("labeler-2", subs[2].item_id, {"choice": "help\u0000ful"})

    async def main() -> tuple[list[Submitted | BaseException], LabelBatcher]:
        async with batchers(postgres_dsn, config, 1, writers=1) as (batcher,):
            return await gather_outcomes(batcher, subs), batcher

    outcomes, batcher = asyncio.run(main())

    assert batcher.largest_batch == 4
    assert isinstance(outcomes[2], psycopg.Error)
    assert all(isinstance(o, Submitted) for i, o in enumerate(outcomes) if i != 2)
    assert query(pool, schema, "SELECT count(*) FROM {schema}.labels") == [(3,)]
    assert store.progress() == full_counts(pool, schema, 1, rejected=0)


def test_batched_claims_share_the_slots_exactly(
    postgres_dsn: str, pool: ConnectionPool[Any], schema: str
) -> None:
    """32 labelers claim 3 tasks each at once through several batchers: 20 items with 2
    slots each give exactly 40 leases, never two on an item to one labeler."""
    n, items = 2, 20
    config = make_config(schema, labels_per_item=n, max_leases=3)
    add_items(pool, schema, items)

    async def main() -> tuple[list[Any], list[ClaimBatcher]]:
        async with claim_batchers(postgres_dsn, config, BATCHERS) as group:
            rng = random.Random(7)
            claims = [rng.choice(group).submit(labeler) for labeler in LABELERS for _ in range(3)]
            return await asyncio.gather(*claims), group

    answers, group = asyncio.run(main())

    leased = [a for a in answers if a is not None]
    assert len(leased) == n * items
    assert answers.count(None) == 3 * len(LABELERS) - n * items
    per_item = Counter(task.item_id for task, _ in leased)
    assert set(per_item.values()) == {n}
    assert (
        query(
            pool,
            schema,
            "SELECT count(*) FROM {schema}.leases WHERE reserved GROUP BY labeler, item_id"
            " HAVING count(*) > 1",
        )
        == []
    )
    assert_lease_counts_match(pool, schema)
    assert max(b.largest_batch for b in group) > 1


def test_claims_in_one_batch_follow_each_other(
    postgres_dsn: str, pool: ConnectionPool[Any], schema: str
) -> None:
    config = make_config(schema, labels_per_item=1, max_leases=2)
    add_items(pool, schema, 5)

    async def main() -> tuple[list[Any], ClaimBatcher]:
        async with claim_batchers(postgres_dsn, config, 1, writers=1) as (batcher,):
            answers = await asyncio.gather(
                *(batcher.submit(labeler) for labeler in ("ann", "ann", "ann", "bob")),
                return_exceptions=True,
            )
            return answers, batcher

    (first, second, third, bobs), batcher = asyncio.run(main())

    assert (batcher.batches, batcher.largest_batch) == (1, 4)
    assert isinstance(first, tuple) and isinstance(second, tuple) and isinstance(bobs, tuple)
    assert [first[0].item_id, second[0].item_id, bobs[0].item_id] == [
        "item-00000",
        "item-00001",
        "item-00002",
    ]
    assert isinstance(third, QuotaExceeded) and third.reason == "max_leases_per_labeler"
    assert third.retry_after > 0
