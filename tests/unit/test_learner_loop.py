"""The learner's loop on in-memory topics: it trains only once caught up, publishes a
version for every unlabeled item, scores late items with the current model, and waits
(saying why) while it cannot train."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from labelops.api.campaign import Task
from labelops.learner.loop import Learner
from labelops.learner.metrics import LearnerMetrics
from labelops.learner.schedule import RetrainPolicy
from labelops.learner.tasks import learning_for
from labelops.learner.training import Prediction

ITEMS, LABELS = "t.items", "t.labels"
SPAM_WORDS = ["free prize now", "win cash call", "claim your free prize"]
HAM_WORDS = ["see you at lunch", "call mum later", "ok home soon"]


@dataclass
class Record:
    """What the loop reads of a Kafka message."""

    _topic: str
    _value: bytes
    _offset: int = 0

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes:
        return self._value

    def offset(self) -> int:
        return self._offset


@dataclass
class Topics:
    pending: list[Record] = field(default_factory=list)
    caught_up: bool = False
    missing_topics: list[str] = field(default_factory=list)

    def assign_new_partitions(self) -> None:
        pass

    def poll(self, max_messages: int, timeout: float) -> list[Any]:
        batch, self.pending = self.pending[:max_messages], self.pending[max_messages:]
        return batch


@dataclass
class Published:
    versions: list[tuple[str, list[Prediction]]] = field(default_factory=list)

    def publish(self, version: str, predictions: Iterable[Prediction]) -> int:
        batch = list(predictions)
        self.versions.append((version, batch))
        return len(batch)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def item(n: int, spam: bool) -> Record:
    text = f"{(SPAM_WORDS if spam else HAM_WORDS)[n % 3]} {n}"
    return Record(ITEMS, json.dumps({"id": f"i{n:03d}", "payload": {"text": text}}).encode())


def label(n: int, spam: bool, origin: str = "human") -> Record:
    document = {
        "labelId": f"l{n}",
        "itemId": f"i{n:03d}",
        "origin": origin,
        "value": {"choice": "spam" if spam else "ham"},
    }
    return Record(LABELS, json.dumps(document).encode())


def learner(topics: Topics, published: Published, clock: Clock, **policy: Any) -> Learner:
    task = Task.model_validate(
        {"type": "classification", "instructions": "x", "choices": ["ham", "spam"]}
    )
    return Learner(
        task_type=task.type,
        learning=learning_for(task),
        items_topic=ITEMS,
        labels_topic=LABELS,
        reader=topics,
        publisher=published,
        policy=RetrainPolicy(policy.get("every_labels", 10), policy.get("every_seconds", 60)),
        min_labels=4,
        metrics=LearnerMetrics(),
        clock=clock,
    )


def test_nothing_is_trained_before_both_topics_are_read_to_their_end() -> None:
    topics = Topics(
        [item(n, n % 2 == 0) for n in range(20)] + [label(n, n % 2 == 0) for n in range(8)]
    )
    published = Published()
    loop = learner(topics, published, Clock())
    loop.turn()
    assert published.versions == [] and loop.model is None
    assert loop.ready()[0] is False
    topics.caught_up = True
    loop.turn()
    assert loop.ready()[0] is True
    ((version, predictions),) = published.versions
    assert version == "builtin-000000008"
    assert [p.item_id for p in predictions] == [f"i{n:03d}" for n in range(8, 20)]
    assert all(
        p.value["choice"] in ("ham", "spam") and 0.5 <= p.confidence <= 1 for p in predictions
    )


def test_machine_labels_do_not_count_and_late_items_get_the_current_version() -> None:
    topics = Topics(
        [item(n, n % 2 == 0) for n in range(12)]
        + [label(n, n % 2 == 0) for n in range(6)]
        + [label(n, True, origin="machine") for n in range(6, 12)],
        caught_up=True,
    )
    published, clock = Published(), Clock()
    loop = learner(topics, published, clock)
    loop.turn()
    assert [v for v, _ in published.versions] == ["builtin-000000006"]
    assert len(published.versions[0][1]) == 6  # machine-labeled items are still scored
    topics.pending = [item(50, True), item(51, False)]
    clock.now += 2
    loop.turn()
    version, late = published.versions[-1]
    assert version == "builtin-000000006"
    assert [p.item_id for p in late] == ["i050", "i051"]
    clock.now += 2
    loop.turn()  # nothing new: nothing published
    assert len(published.versions) == 2


def test_retrains_after_k_new_labels_or_the_timer_with_a_higher_version() -> None:
    topics = Topics(
        [item(n, n % 2 == 0) for n in range(40)] + [label(n, n % 2 == 0) for n in range(6)],
        caught_up=True,
    )
    published, clock = Published(), Clock()
    loop = learner(topics, published, clock, every_labels=10, every_seconds=60)
    loop.turn()
    topics.pending = [label(n, n % 2 == 0) for n in range(6, 15)]  # 9 new: not yet
    loop.turn()
    assert [v for v, _ in published.versions] == ["builtin-000000006"]
    topics.pending = [label(15, False)]  # the 10th
    loop.turn()
    assert published.versions[-1][0] == "builtin-000000016"
    assert len(published.versions[-1][1]) == 40 - 16
    topics.pending = [label(16, True)]
    clock.now += 59
    loop.turn()
    assert published.versions[-1][0] == "builtin-000000016"
    clock.now += 1
    loop.turn()
    assert published.versions[-1][0] == "builtin-000000017"


def test_while_it_cannot_train_it_says_why_and_retries_at_the_next_trigger() -> None:
    topics = Topics(
        [item(n, n < 5) for n in range(30)] + [label(n, False) for n in range(5, 11)],
        caught_up=True,
    )
    published, clock = Published(), Clock()
    loop = learner(topics, published, clock, every_labels=2, every_seconds=60)
    loop.turn()
    ready, details = loop.ready()
    assert ready and loop.model is None
    assert "1 class (all 'ham')" in details["waiting"]
    topics.pending = [label(0, True), label(1, True)]
    loop.turn()
    assert loop.model is not None and loop.model.version == "builtin-000000008"
    assert "waiting" not in loop.ready()[1]
    assert published.versions and published.versions[-1][0] == "builtin-000000008"
