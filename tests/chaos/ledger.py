"""The chaos suite's ledger: what the outside world was promised, and the check that it was
kept.

The ledger records every item the suite's producer got Kafka's acknowledgement for and every
label a labeler got a 2xx receipt for (keyed by the submission's Idempotency-Key). After a
fault, `reconcile` compares it with what is really there: the labels table, the labels topic
(de-duplicated by label id, as its consumers must) and the items table, and the worker's O(1)
counters with full counts of the tables. Pure: the readings are passed in, so the rules are
unit-tested without a stack (tests/unit/test_chaos_ledger.py).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ack:
    """A label acknowledged to its labeler: the receipt's label id, item and labeler."""

    idempotency_key: str
    label_id: str
    item_id: str
    labeler: str


@dataclass(frozen=True)
class StoredLabel:
    """A row of the labels table, with its item's external id."""

    label_id: str
    item_id: str
    labeler: str
    idempotency_key: str | None


class Ledger:
    """Thread-safe: the producer's delivery callbacks and the labelers write to it at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: set[str] = set()
        self._acks: dict[str, Ack] = {}
        self.replay_mismatches: list[str] = []

    def item_produced(self, item_id: str) -> None:
        with self._lock:
            self._items.add(item_id)

    def acknowledged(self, ack: Ack) -> None:
        """A 2xx receipt. A replay of the same key must carry the label id of the first."""
        with self._lock:
            first = self._acks.setdefault(ack.idempotency_key, ack)
            if first.label_id != ack.label_id:
                self.replay_mismatches.append(
                    f"Idempotency-Key {ack.idempotency_key}: first answered label "
                    f"{first.label_id}, the retry {ack.label_id}"
                )

    def snapshot(self) -> tuple[frozenset[str], tuple[Ack, ...]]:
        with self._lock:
            return frozenset(self._items), tuple(self._acks.values())

    @property
    def acknowledged_count(self) -> int:
        with self._lock:
            return len(self._acks)


@dataclass(frozen=True)
class Observed:
    """What the suite read after a fault had healed."""

    stored_labels: tuple[StoredLabel, ...]
    topic_label_ids: Counter[str]
    stored_item_ids: Counter[str]  # external id -> rows (a row twice would be a doubled item)
    counters: Mapping[str, int]  # the worker's /v1/progress figures
    full_counts: Mapping[str, int]  # the same figures counted from the tables


@dataclass(frozen=True)
class Verdict:
    acknowledged: int
    labels_lost: tuple[str, ...] = ()  # acknowledged, not in the labels table
    labels_doubled: tuple[str, ...] = ()  # acknowledged, stored more than once
    labels_misfiled: tuple[str, ...] = ()  # stored under another item or labeler than receipted
    labels_not_relayed: tuple[str, ...] = ()  # acknowledged, never on the labels topic
    items_lost: tuple[str, ...] = ()
    items_doubled: tuple[str, ...] = ()
    counter_mismatches: tuple[str, ...] = ()
    replay_mismatches: tuple[str, ...] = ()
    # Informational: committed labels whose 2xx never reached the labeler (the retry of their
    # Idempotency-Key answers them), and topic duplicates (a relay that died after Kafka's ack).
    unacknowledged_stored: int = 0
    topic_duplicates: int = 0
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def reconcile(
    items_produced: Iterable[str],
    acks: Iterable[Ack],
    observed: Observed,
    replay_mismatches: Iterable[str] = (),
) -> Verdict:
    acks = tuple(acks)
    by_label: dict[str, list[StoredLabel]] = {}
    for row in observed.stored_labels:
        by_label.setdefault(row.label_id, []).append(row)
    lost = tuple(a.label_id for a in acks if a.label_id not in by_label)
    doubled = tuple(a.label_id for a in acks if len(by_label.get(a.label_id, ())) > 1)
    misfiled = tuple(
        a.label_id
        for a in acks
        if any(
            (r.item_id, r.labeler) != (a.item_id, a.labeler) for r in by_label.get(a.label_id, ())
        )
    )
    not_relayed = tuple(a.label_id for a in acks if observed.topic_label_ids[a.label_id] == 0)
    produced = set(items_produced)
    items_lost = tuple(sorted(produced - set(observed.stored_item_ids)))
    items_doubled = tuple(sorted(i for i, n in observed.stored_item_ids.items() if n > 1))
    mismatches = tuple(
        f"{name}: counter {observed.counters.get(name)} != counted {count}"
        for name, count in sorted(observed.full_counts.items())
        if observed.counters.get(name) != count
    )
    replays = tuple(replay_mismatches)
    acked_ids = {a.label_id for a in acks}
    unacknowledged = sum(1 for label_id in by_label if label_id not in acked_ids)
    duplicates = sum(n - 1 for n in observed.topic_label_ids.values() if n > 1)
    problems = [
        f"{what}: {len(found)} ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''})"
        for what, found in (
            ("acknowledged labels missing from PostgreSQL", lost),
            ("acknowledged labels stored more than once", doubled),
            ("acknowledged labels stored under another item or labeler", misfiled),
            ("acknowledged labels missing from the labels topic", not_relayed),
            ("produced items missing from PostgreSQL", items_lost),
            ("items stored more than once", items_doubled),
            ("counters that differ from full counts", mismatches),
            ("retries answered with another label", replays),
        )
        if found
    ]
    return Verdict(
        acknowledged=len(acks),
        labels_lost=lost,
        labels_doubled=doubled,
        labels_misfiled=misfiled,
        labels_not_relayed=not_relayed,
        items_lost=items_lost,
        items_doubled=items_doubled,
        counter_mismatches=mismatches,
        replay_mismatches=replays,
        unacknowledged_stored=unacknowledged,
        topic_duplicates=duplicates,
        problems=tuple(problems),
    )
