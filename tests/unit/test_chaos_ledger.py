"""The chaos suite's ledger rules (tests/chaos/ledger.py): what counts as a lost, doubled or
misfiled label, a lost or doubled item, and a counter that drifted."""

from __future__ import annotations

from collections import Counter

from chaos.ledger import Ack, Ledger, Observed, StoredLabel, reconcile


def _ack(n: int, labeler: str = "l1") -> Ack:
    return Ack(f"key-{n}", f"label-{n}", f"item-{n}", labeler)


def _stored(ack: Ack) -> StoredLabel:
    return StoredLabel(ack.label_id, ack.item_id, ack.labeler, ack.idempotency_key)


def _observed(
    stored: list[StoredLabel],
    topic: list[str],
    items: list[str],
    counters: dict[str, int] | None = None,
    full: dict[str, int] | None = None,
) -> Observed:
    return Observed(
        stored_labels=tuple(stored),
        topic_label_ids=Counter(topic),
        stored_item_ids=Counter(items),
        counters=counters or {"labels": len(stored)},
        full_counts=full or {"labels": len(stored)},
    )


def test_everything_kept_is_ok_with_duplicates_on_the_topic_and_unanswered_commits() -> None:
    acks = [_ack(1), _ack(2)]
    unanswered = StoredLabel("label-9", "item-9", "l2", "key-9")
    observed = _observed(
        [*map(_stored, acks), unanswered],
        ["label-1", "label-2", "label-2", "label-9"],
        ["item-1", "item-2", "item-9"],
    )
    verdict = reconcile(["item-1", "item-2", "item-9"], acks, observed)
    assert verdict.ok, verdict.problems
    assert verdict.acknowledged == 2
    assert verdict.topic_duplicates == 1  # a relay that died after Kafka's ack republishes
    assert verdict.unacknowledged_stored == 1  # committed, the 2xx lost on the way


def test_an_acknowledged_label_missing_from_the_table_or_the_topic_is_lost() -> None:
    acks = [_ack(1), _ack(2), _ack(3)]
    observed = _observed(
        [_stored(acks[0]), _stored(acks[2])], ["label-1", "label-2"], ["item-1", "item-2", "item-3"]
    )
    verdict = reconcile(["item-1", "item-2", "item-3"], acks, observed)
    assert verdict.labels_lost == ("label-2",)
    assert verdict.labels_not_relayed == ("label-3",)
    assert not verdict.ok
    assert any("missing from PostgreSQL: 1 (label-2)" in p for p in verdict.problems)


def test_a_label_stored_twice_or_under_another_item_is_a_problem() -> None:
    ack = _ack(1)
    twice = _observed([_stored(ack), _stored(ack)], ["label-1"], ["item-1"], full={"labels": 2})
    assert reconcile(["item-1"], [ack], twice).labels_doubled == ("label-1",)
    elsewhere = _observed(
        [StoredLabel("label-1", "item-7", "l1", "key-1")], ["label-1"], ["item-1", "item-7"]
    )
    assert reconcile(["item-1"], [ack], elsewhere).labels_misfiled == ("label-1",)


def test_items_lost_or_doubled_and_counters_that_drift() -> None:
    observed = _observed(
        [],
        [],
        ["item-1", "item-2", "item-2"],
        counters={"itemsTotal": 2, "labels": 0},
        full={"itemsTotal": 3, "labels": 0},
    )
    verdict = reconcile(["item-1", "item-2", "item-3"], [], observed)
    assert verdict.items_lost == ("item-3",)
    assert verdict.items_doubled == ("item-2",)
    assert verdict.counter_mismatches == ("itemsTotal: counter 2 != counted 3",)


def test_a_retry_answered_with_another_label_id_is_recorded_and_fails_the_verdict() -> None:
    ledger = Ledger()
    ledger.acknowledged(_ack(1))
    ledger.acknowledged(_ack(1))  # the same answer again: a faithful replay
    ledger.acknowledged(Ack("key-1", "label-other", "item-1", "l1"))
    assert ledger.acknowledged_count == 1
    assert len(ledger.replay_mismatches) == 1
    items, acks = ledger.snapshot()
    observed = _observed([_stored(_ack(1))], ["label-1"], ["item-1"])
    verdict = reconcile(items | {"item-1"}, acks, observed, ledger.replay_mismatches)
    assert not verdict.ok
    assert "retries answered with another label: 1" in verdict.problems[0]
