"""Which arrival locks an ingest batch takes (labelops.store.items.arrival_locks): pure."""

import zlib

from labelops.store.items import ARRIVAL_BUCKETS, arrival_bucket, arrival_locks


def ids_in_distinct_buckets(count: int) -> list[str]:
    found: dict[int, str] = {}
    n = 0
    while len(found) < count:
        found.setdefault(arrival_bucket(f"item-{n}".encode()), f"item-{n}")
        n += 1
    return list(found.values())


def test_the_bucket_is_the_same_in_every_process() -> None:
    # crc32, not Python's hash(): two worker replicas must agree on an id's bucket.
    assert arrival_bucket(b"item-7") == zlib.crc32(b"item-7") % ARRIVAL_BUCKETS
    assert {arrival_bucket(f"item-{n}".encode()) for n in range(1000)} == set(
        range(ARRIVAL_BUCKETS)
    )


def test_an_item_and_its_prediction_take_one_lock_exclusively() -> None:
    assert arrival_locks(["item-1"], ["item-1"]) == [(arrival_bucket(b"item-1"), True)]


def test_locks_are_sorted_by_bucket_exclusive_where_a_prediction_is() -> None:
    a, b, c = ids_in_distinct_buckets(3)
    locks = arrival_locks(items=[a, b, b], predictions=[c])
    bucket_a, bucket_b, bucket_c = (arrival_bucket(i.encode()) for i in (a, b, c))
    assert locks == sorted([(bucket_a, False), (bucket_b, False), (bucket_c, True)])
    assert [bucket for bucket, _ in locks] == sorted({bucket for bucket, _ in locks})


def test_a_batch_of_dead_letters_only_takes_no_lock() -> None:
    assert arrival_locks([], []) == []
