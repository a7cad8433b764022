"""submit: validation, conflicts, idempotency, quotas, and what one accepted label writes."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg_pool import ConnectionPool
from test_store_support import add_items, make_config, migrated_schema, open_pool, query

from labelops.store import ClaimedTask, LabelOrigin, LabelStore
from labelops.store.errors import (
    Conflict,
    InvalidLabel,
    LeaseRequired,
    NotFound,
    QuotaExceeded,
)
from labelops.store.policy import spec_digest
from labelops.store.progress import ProgressCounts
from labelops.worker.http.json_bodies import timestamp

pytestmark = pytest.mark.integration

HELPFUL = {"choice": "helpful"}
UNHELPFUL = {"choice": "unhelpful"}


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "submit") as name:
        yield name


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn, size=12) as opened:
        yield opened


def claimed(store: LabelStore, labeler: str) -> str:
    task = store.claim(labeler)
    assert task is not None, f"no task for {labeler}"
    return task.item_id


def test_an_accepted_label_writes_label_outbox_counters_and_frees_the_lease(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema, labels_per_item=2))
    [item_id] = add_items(pool, schema, 1)
    claimed(store, "ann")
    before = dt.datetime.now(dt.UTC)
    result = store.submit("ann", item_id, HELPFUL)
    assert (result.item_id, result.labeler, result.replayed) == (item_id, "ann", False)
    assert not result.item_completed, "1 of 2 labels"
    assert abs((result.created_at - before).total_seconds()) < 5

    [(message_key, message)] = query(
        pool, schema, "SELECT message_key, message FROM {schema}.outbox"
    )
    assert message_key == item_id
    assert message == {
        "labelId": result.label_id,
        "campaign": {"namespace": "tests", "name": schema.replace("_", "-")},
        "itemId": item_id,
        "labeler": "ann",
        "origin": "human",
        "value": HELPFUL,
        "ordinal": 1,
        "labelsPerItem": 2,
        "createdAt": result.created_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        # Lineage: the config's generation and a digest of the task the labeler was given.
        "generation": store.config.generation,
        "specDigest": spec_digest(store.config.task),
        "status": "counted",
    }
    assert query(pool, schema, "SELECT label_count, lease_count FROM {schema}.items") == [(1, 0)]
    stats = store.me("ann")
    assert (stats.labels_today, stats.labels_total, stats.active_leases) == (1, 1, 0)

    claimed(store, "bob")
    assert store.submit("bob", item_id, UNHELPFUL, origin=LabelOrigin.MACHINE).item_completed
    assert store.progress() == ProgressCounts(
        items_total=1, items_completed=1, labels=2, human_labeled=1, machine_labeled=1
    )


def test_an_invalid_label_is_refused_counted_and_keeps_the_lease(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema))
    [item_id] = add_items(pool, schema, 1)
    claimed(store, "ann")
    with pytest.raises(InvalidLabel) as refused:
        store.submit("ann", item_id, {"choice": "maybe"})
    assert [v.pointer for v in refused.value.violations] == ["/value/choice"]
    assert "'maybe' is not one of ['helpful', 'unhelpful']" in refused.value.message
    with pytest.raises(InvalidLabel) as refused:
        store.submit("ann", item_id, {"choice": "helpful\x00"})
    assert "NUL" in refused.value.message
    assert store.progress().rejected == 2
    assert store.me("ann").active_leases == 1, "a refused label does not consume the lease"
    assert store.submit("ann", item_id, HELPFUL).item_completed


def test_conflicts_name_what_went_wrong(pool: ConnectionPool[Any], schema: str) -> None:
    store = LabelStore(pool, make_config(schema, labels_per_item=1))
    first, second = add_items(pool, schema, 2)
    claimed(store, "ann")
    store.submit("ann", first, HELPFUL)

    with pytest.raises(Conflict) as already:
        store.submit("ann", first, HELPFUL)
    assert already.value.reason == "already_labeled"

    with pytest.raises(Conflict) as full:
        store.submit("bob", first, HELPFUL)
    assert full.value.reason == "item_full"
    assert "labelsPerItem" in full.value.message

    with pytest.raises(LeaseRequired) as unclaimed:
        store.submit("bob", second, HELPFUL)
    assert unclaimed.value.reason == "lease_required"

    with pytest.raises(NotFound):
        store.submit("ann", "no-such-item", HELPFUL)


def test_a_retry_with_the_same_idempotency_key_returns_the_original_result(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema, labels_per_item=2))
    first, second = add_items(pool, schema, 2)
    claimed(store, "ann")
    original = store.submit("ann", first, HELPFUL, idempotency_key="k-1")

    # The item fills up meanwhile; the retry is still answered with the original result.
    claimed(store, "bob")
    store.submit("bob", first, HELPFUL)
    replay = store.submit("ann", first, dict(HELPFUL), idempotency_key="k-1")
    assert replay.replayed
    assert (replay.label_id, replay.created_at) == (original.label_id, original.created_at)
    assert store.progress().labels == 2, "a replay adds nothing"

    with pytest.raises(Conflict) as other_value:
        store.submit("ann", first, UNHELPFUL, idempotency_key="k-1")
    assert other_value.value.reason == "idempotency_key_reused"
    claimed(store, "ann")
    with pytest.raises(Conflict) as other_item:
        store.submit("ann", second, HELPFUL, idempotency_key="k-1")
    assert other_item.value.reason == "idempotency_key_reused"
    # Keys are per labeler.
    claimed(store, "bob")
    assert not store.submit("bob", second, HELPFUL, idempotency_key="k-1").replayed


def test_concurrent_retries_with_one_key_make_one_label(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema, labels_per_item=1))
    [item_id] = add_items(pool, schema, 1)
    claimed(store, "ann")
    start = threading.Barrier(8)
    results = []

    def retry() -> None:
        start.wait()
        results.append(store.submit("ann", item_id, HELPFUL, idempotency_key="same"))

    threads = [threading.Thread(target=retry) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    assert len({r.label_id for r in results}) == 1
    assert sorted(r.replayed for r in results) == [False] + [True] * 7
    assert query(pool, schema, "SELECT count(*) FROM {schema}.labels") == [(1,)]


def test_submissions_beyond_the_daily_quota_are_refused(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema, daily=2, max_leases=5))
    add_items(pool, schema, 3)
    held = [claimed(store, "ann") for _ in range(2)]
    for item_id in held:
        store.submit("ann", item_id, HELPFUL)
    # A lease taken before the quota filled up (here: added behind the store's back, as a
    # second worker replica racing would).
    [(last,)] = query(
        pool,
        schema,
        "WITH lease AS ("
        "  INSERT INTO {schema}.leases (item_id, labeler, claimed_at, expires_at)"
        "  SELECT id, 'ann', now(), now() + interval '1 hour' FROM {schema}.items"
        "  WHERE label_count = 0 RETURNING item_id)"
        " UPDATE {schema}.items SET lease_count = lease_count + 1"
        " WHERE id IN (SELECT item_id FROM lease) RETURNING external_id",
    )
    with pytest.raises(QuotaExceeded) as refused:
        store.submit("ann", last, HELPFUL)
    assert refused.value.reason == "per_labeler_daily"
    assert refused.value.retry_after >= 1
    assert store.progress().labels == 2


def test_a_label_is_accepted_whichever_replica_leased_its_task(
    pool: ConnectionPool[Any], schema: str
) -> None:
    """Each store remembers the payloads of the tasks it leased; another one reads the item."""
    config = make_config(schema, labels_per_item=1)
    leasing, other = LabelStore(pool, config), LabelStore(pool, config)
    first, second = add_items(pool, schema, 2)
    assert claimed(leasing, "ann") == first
    assert not other.submit("ann", first, HELPFUL).replayed
    assert claimed(leasing, "ann") == second
    with pytest.raises(InvalidLabel):
        other.submit("ann", second, {"choice": "maybe"})
    assert leasing.submit("ann", second, HELPFUL).item_completed
    assert store_counts(leasing) == (2, 1)


def test_a_reused_key_is_reported_before_the_value_is_validated(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema, labels_per_item=1))
    first, second = add_items(pool, schema, 2)
    claimed(store, "ann")
    store.submit("ann", first, HELPFUL, idempotency_key="k-1")
    claimed(store, "ann")
    with pytest.raises(Conflict) as reused:
        store.submit("ann", second, {"choice": "maybe"}, idempotency_key="k-1")
    assert reused.value.reason == "idempotency_key_reused"
    assert store.progress().rejected == 0


def test_message_times_are_written_as_the_api_writes_them(
    pool: ConnectionPool[Any], schema: str
) -> None:
    """createdAt of the labels topic (built by the database) and of the receipt agree, also
    on a whole second, where RFC 3339 leaves the fraction out."""
    moments = [
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 2, 3, 4, 5, 120, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=5))),
    ]
    for moment in moments:
        [(written,)] = query(pool, schema, "SELECT {schema}.rfc3339_utc(%s)", moment)
        assert written == timestamp(moment)


def store_counts(store: LabelStore) -> tuple[int, int]:
    progress = store.progress()
    return progress.labels, progress.rejected


def test_submit_and_claim_leases_the_next_task_with_the_label(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema, labels_per_item=1, daily=3, max_leases=5))
    first, second, third, fourth = add_items(pool, schema, 4)
    assert claimed(store, "ann") == first
    result, upcoming = store.submit_and_claim("ann", first, HELPFUL)
    assert not result.replayed and result.item_completed
    assert isinstance(upcoming, ClaimedTask) and upcoming.item_id == second
    leases = "SELECT i.external_id FROM {schema}.leases l JOIN {schema}.items i ON i.id = l.item_id"
    assert query(pool, schema, leases) == [(second,)]

    # The leased task's label is accepted like any other; the daily quota (3) then leaves
    # room for no further lease after the third label.
    result, upcoming = store.submit_and_claim("ann", second, HELPFUL)
    assert isinstance(upcoming, ClaimedTask) and upcoming.item_id == third
    result, upcoming = store.submit_and_claim("ann", third, HELPFUL)
    assert isinstance(upcoming, QuotaExceeded) and upcoming.reason == "per_labeler_daily"
    assert query(pool, schema, leases) == []
    assert store.progress().labels == 3
    claimed(store, "bob")
    result, upcoming = store.submit_and_claim("bob", fourth, HELPFUL)
    assert upcoming is None, "nothing left to label"


def test_submit_and_claim_leaves_no_lease_behind_a_refusal(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema, labels_per_item=1))
    first, _, _ = add_items(pool, schema, 3)
    claimed(store, "ann")
    result, upcoming = store.submit_and_claim("ann", first, HELPFUL, idempotency_key="k-1")
    assert isinstance(upcoming, ClaimedTask)
    held = "SELECT count(*) FROM {schema}.leases WHERE reserved"
    assert query(pool, schema, held) == [(1,)]

    # A retry is answered with the original receipt, and a next task besides the one the
    # lost answer carried (that lease lapses); a reused key and a refusal lease nothing.
    replay, again = store.submit_and_claim("ann", first, HELPFUL, idempotency_key="k-1")
    assert replay.replayed and replay.label_id == result.label_id
    assert isinstance(again, ClaimedTask) and again.item_id != upcoming.item_id
    assert query(pool, schema, held) == [(2,)]
    with pytest.raises(Conflict):
        store.submit_and_claim("ann", first, UNHELPFUL, idempotency_key="k-1")
    with pytest.raises(Conflict):
        store.submit_and_claim("bob", first, HELPFUL)
    with pytest.raises(InvalidLabel):
        store.submit_and_claim("ann", upcoming.item_id, {"choice": "maybe"})
    assert query(pool, schema, held) == [(2,)]


def test_concurrent_retries_of_submit_and_claim_make_one_label(
    pool: ConnectionPool[Any], schema: str
) -> None:
    store = LabelStore(pool, make_config(schema, labels_per_item=1, max_leases=3))
    [item_id, *_] = add_items(pool, schema, 12)
    claimed(store, "ann")
    start = threading.Barrier(8)
    results: list[tuple[Any, Any]] = []

    def retry() -> None:
        start.wait()
        results.append(store.submit_and_claim("ann", item_id, HELPFUL, idempotency_key="same"))

    threads = [threading.Thread(target=retry) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.label_id for r, _ in results}) == 1
    assert sorted(r.replayed for r, _ in results) == [False] + [True] * 7
    leased = [n.item_id for _, n in results if isinstance(n, ClaimedTask)]
    assert len(leased) == len(set(leased)) <= 3, "maxLeasesPerLabeler holds"
    assert query(pool, schema, "SELECT count(*) FROM {schema}.labels") == [(1,)]


def test_recall_leased_reads_only_the_payloads_of_leases_the_labeler_holds(
    pool: ConnectionPool[Any], schema: str
) -> None:
    config = make_config(schema, labels_per_item=1)
    leasing = LabelStore(pool, config)  # another process, which leased the tasks
    items = add_items(pool, schema, 3)
    ann_item = claimed(leasing, "ann")
    bob_item = claimed(leasing, "bob")
    assert ann_item != bob_item
    store = LabelStore(pool, config)
    unleased = next(i for i in items if i not in (ann_item, bob_item))
    # bob holds no lease on ann's item, nobody on the third, and "nope" is no item.
    pairs = [("ann", ann_item), ("bob", bob_item), ("bob", ann_item), ("ann", unleased)]
    assert store.recall_leased([*pairs, ("ann", "nope")]) == 2
    assert store.recall_leased(pairs) == 0, "what it remembered is not read again"
    # The remembered payloads serve the labels, which are accepted as usual ...
    assert store.submit("ann", ann_item, HELPFUL).labeler == "ann"
    # ... and a label without a lease is refused as ever.
    with pytest.raises(Conflict):
        store.submit("ann", unleased, HELPFUL)
    assert query(pool, schema, "SELECT count(*) FROM {schema}.labels") == [(1,)]
