"""claim / release: which task a labeler gets, leases, expiry, skips, quotas at claim time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg_pool import ConnectionPool
from test_store_support import (
    add_items,
    make_config,
    migrated_schema,
    open_pool,
    query,
    wait_for,
)

from labelops.store import LabelStore
from labelops.store.errors import Conflict, NotFound, QuotaExceeded

pytestmark = pytest.mark.integration

HELPFUL = {"choice": "helpful"}


def claim_id(store: LabelStore, labeler: str) -> str | None:
    task = store.claim(labeler)
    return task.item_id if task else None


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "claim") as name:
        yield name


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn) as opened:
        yield opened


def test_claims_follow_priority_then_age(pool: ConnectionPool[Any], schema: str) -> None:
    store = LabelStore(pool, make_config(schema, max_leases=10))
    priorities = {0: 1, 1: 5, 2: 1, 3: 9, 4: 5}
    ids = add_items(pool, schema, 5, priority=lambda i: priorities[i])
    claimed = [store.claim("ann") for _ in range(5)]
    assert [task.item_id for task in claimed if task] == [ids[3], ids[1], ids[4], ids[0], ids[2]]
    assert store.claim("ann") is None, "every item is leased to ann already"


def test_a_claim_leases_for_lease_seconds_and_returns_the_task(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema, lease_seconds=600))
    [item_id] = add_items(pool, schema, 1)
    before = dt.datetime.now(dt.UTC)
    task = store.claim("ann")
    assert task is not None
    assert task.item_id == item_id
    assert task.payload == {"text": "text 0"}
    expected = before + dt.timedelta(seconds=600)
    assert abs((task.lease_expires_at - expected).total_seconds()) < 5
    assert store.me("ann").active_leases == 1


def test_an_item_is_leased_to_at_most_labels_per_item_labelers(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema, labels_per_item=2))
    first, second = add_items(pool, schema, 2)
    assert claim_id(store, "ann") == first
    assert claim_id(store, "bob") == first
    assert claim_id(store, "cid") == second, "first has 2 leases, its labelsPerItem"


def test_labels_and_leases_together_fill_an_item(pool: ConnectionPool[Any], schema: str) -> None:
    store = LabelStore(pool, make_config(schema, labels_per_item=2))
    [item_id] = add_items(pool, schema, 1)
    store.claim("ann")
    store.submit("ann", item_id, HELPFUL)
    assert store.claim("ann") is None, "ann already labeled the only item"
    assert claim_id(store, "bob") == item_id
    assert store.claim("cid") is None, "1 label + 1 lease = labelsPerItem"


def test_an_expired_lease_returns_the_item_to_the_pool(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema, lease_seconds=0.5))
    [item_id] = add_items(pool, schema, 1)
    assert claim_id(store, "ann") == item_id
    assert store.claim("bob") is None, "ann's lease still holds the only slot"
    task = wait_for(lambda: store.claim("bob"), timeout=10, what="ann's lease to expire")
    assert task.item_id == item_id
    # ann's slot went to bob: her late label no longer fits.
    with pytest.raises(Conflict) as refused:
        store.submit("ann", item_id, HELPFUL)
    assert refused.value.reason == "lease_expired"
    assert store.submit("bob", item_id, HELPFUL).item_completed


def test_a_late_label_is_accepted_while_its_slot_is_still_free(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema, lease_seconds=0.3))
    first, second, third = add_items(pool, schema, 3)
    # Expired but not yet reaped: the slot is still reserved for ann.
    assert claim_id(store, "ann") == first
    wait_for(lambda: store.me("ann").active_leases == 0, timeout=10, what="ann's lease to lapse")
    assert not store.submit("ann", first, HELPFUL).replayed

    # Expired and reaped by bob's claim (bob skipped the item, so he gets another one): the
    # slot went back to the pool, nobody took it, ann's label still fits.
    store.claim("bob")
    store.release("bob", second)
    assert claim_id(store, "ann") == second
    wait_for(lambda: store.me("ann").active_leases == 0, timeout=10, what="ann's lease to lapse")
    assert claim_id(store, "bob") == third, "bob skipped second"
    ann_lease = query(
        pool,
        schema,
        "SELECT l.reserved FROM {schema}.leases l JOIN {schema}.items i ON i.id = l.item_id"
        " WHERE i.external_id = %s AND l.labeler = 'ann'",
        second,
    )
    assert ann_lease == [(False,)], "bob's claim reaped ann's lease"
    assert store.submit("ann", second, HELPFUL).item_completed


def test_release_puts_the_item_back_but_not_for_the_releaser(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema))
    first, second = add_items(pool, schema, 2)
    assert claim_id(store, "ann") == first
    assert claim_id(store, "bob") == second, "first is leased to ann"
    assert store.release("ann", first) is True
    assert store.me("ann").active_leases == 0
    assert store.claim("ann") is None, "ann skipped first and second is leased to bob"
    assert claim_id(store, "cid") == first
    assert store.release("ann", first) is False, "ann holds no lease on it any more"
    with pytest.raises(NotFound):
        store.release("ann", "no-such-item")


def test_max_leases_per_labeler(pool: ConnectionPool[Any], schema: str) -> None:
    store = LabelStore(pool, make_config(schema, max_leases=2, lease_seconds=300))
    add_items(pool, schema, 5)
    store.claim("ann")
    store.claim("ann")
    with pytest.raises(QuotaExceeded) as refused:
        store.claim("ann")
    assert refused.value.reason == "max_leases_per_labeler"
    assert 290 <= refused.value.retry_after <= 300
    assert "maxLeasesPerLabeler" in refused.value.message
    assert store.claim("bob") is not None, "the limit is per labeler"


def test_daily_quota_stops_claims_until_midnight(pool: ConnectionPool[Any], schema: str) -> None:
    store = LabelStore(pool, make_config(schema, daily=2, max_leases=5))
    add_items(pool, schema, 5)
    for _ in range(2):
        task = store.claim("ann")
        assert task is not None
        store.submit("ann", task.item_id, HELPFUL)
    with pytest.raises(QuotaExceeded) as refused:
        store.claim("ann")
    assert refused.value.reason == "per_labeler_daily"
    now = dt.datetime.now(dt.UTC)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    assert abs(refused.value.retry_after - (midnight - now).total_seconds()) < 5
    stats = store.me("ann")
    assert (stats.labels_today, stats.daily_left, stats.labels_total) == (2, 0, 2)
    assert stats.quota_resets_at == midnight


def test_no_more_leases_than_the_daily_quota_leaves_room_for(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema, daily=3, max_leases=5))
    add_items(pool, schema, 5)
    task = store.claim("ann")
    assert task is not None
    store.submit("ann", task.item_id, HELPFUL)
    store.claim("ann")
    store.claim("ann")
    with pytest.raises(QuotaExceeded) as refused:
        store.claim("ann")
    assert refused.value.reason == "per_labeler_daily"
    assert "holds 2 tasks" in refused.value.message


def test_a_paused_campaign_hands_out_no_tasks(pool: ConnectionPool[Any], schema: str) -> None:
    add_items(pool, schema, 1)
    assert LabelStore(pool, make_config(schema, paused=True)).claim("ann") is None
    assert LabelStore(pool, make_config(schema)).claim("ann") is not None


def test_a_labeler_may_claim_again_the_item_whose_lease_lapsed(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema, lease_seconds=0.3))
    [item_id] = add_items(pool, schema, 1)
    first = store.claim("ann")
    assert first is not None
    again = wait_for(lambda: store.claim("ann"), timeout=10, what="ann's lease to lapse")
    assert again.item_id == item_id
    assert again.lease_expires_at > first.lease_expires_at
    counts = query(
        pool,
        schema,
        "SELECT i.lease_count, (SELECT count(*) FROM {schema}.leases l"
        "                       WHERE l.item_id = i.id AND l.reserved)"
        " FROM {schema}.items i",
    )
    assert counts == [(1, 1)], "the item counts exactly its one live lease"


def test_raising_labels_per_item_reopens_completed_items(
    pool: ConnectionPool[Any], schema: str
) -> None:
    one = LabelStore(pool, make_config(schema, labels_per_item=1))
    [item_id] = add_items(pool, schema, 1)
    one.claim("ann")
    assert one.submit("ann", item_id, HELPFUL).item_completed
    assert one.progress().items_completed == 1
    assert one.sync_labels_per_item() == 0

    two = LabelStore(pool, make_config(schema, labels_per_item=2))
    assert claim_id(two, "bob") == item_id, "the first claim reopened the item"
    assert two.progress().items_completed == 0
    assert two.sync_labels_per_item() == 0, "reopening is idempotent"
    assert two.submit("bob", item_id, HELPFUL).item_completed
    assert two.progress().items_completed == 1
