"""The learner's main loop: read, retrain when due, score, publish.

One thread does everything, in order: poll a batch from both topics into the state; once
caught up, retrain when the schedule says so and publish the new version's predictions for
every item without a human label; between retrains, score items that arrived since with the
current model. A training that cannot happen yet (too few labels, one class) or a publish
that fails is logged, shown in metrics and /readyz, and retried at the next trigger.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from confluent_kafka import KafkaException, Message

from labelops.api.campaign import TaskType
from labelops.learner.messages import Unusable, parse_item, parse_label
from labelops.learner.metrics import LearnerMetrics
from labelops.learner.schedule import RetrainPolicy
from labelops.learner.state import LearnerState
from labelops.learner.tasks import TaskLearning
from labelops.learner.training import CannotTrain, Prediction, TrainedModel, train, training_set
from labelops.learner.versions import labels_of

log = logging.getLogger(__name__)

POLL_BATCH = 2000
POLL_SECONDS = 0.5
PARTITION_REFRESH_SECONDS = 30.0
NEW_ITEM_SCORING_SECONDS = 1.0
# A loop that has not turned for this long is stuck (training 100k items takes far less).
ALIVE_ALLOWANCE_SECONDS = 600.0


class Reader(Protocol):
    missing_topics: list[str]

    @property
    def caught_up(self) -> bool: ...

    def assign_new_partitions(self) -> None: ...
    def poll(self, max_messages: int, timeout: float) -> list[Message]: ...


class Publisher(Protocol):
    def publish(self, version: str, predictions: Iterable[Prediction]) -> int: ...


class Learner:
    def __init__(
        self,
        *,
        task_type: TaskType,
        learning: TaskLearning,
        items_topic: str,
        labels_topic: str,
        reader: Reader,
        publisher: Publisher,
        policy: RetrainPolicy,
        min_labels: int,
        metrics: LearnerMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.task_type = task_type
        self.learning = learning
        self.items_topic, self.labels_topic = items_topic, labels_topic
        self.reader, self.publisher = reader, publisher
        self.policy, self.min_labels = policy, min_labels
        self.metrics, self.clock = metrics, clock
        self.state = LearnerState()
        self.model: TrainedModel | None = None
        self.waiting_reason: str | None = None
        self.last_error: str | None = None
        self._attempt_labels: int | None = None
        self._attempt_at: float | None = None
        self._refreshed_at: float | None = None
        self._scored_new_at = 0.0
        self._turned_at = clock()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.turn()

    def turn(self) -> None:
        now = self.clock()
        self._turned_at = now
        if self._refreshed_at is None or now - self._refreshed_at >= PARTITION_REFRESH_SECONDS:
            self.reader.assign_new_partitions()
            self._refreshed_at = now
        for message in self.reader.poll(POLL_BATCH, POLL_SECONDS):
            self.take(message)
        self.metrics.items.set(len(self.state.items))
        labels = self.state.human_labels
        self.metrics.human_labels.set(labels)
        if not self.reader.caught_up:
            return
        since = None if self._attempt_at is None else self.clock() - self._attempt_at
        if self.policy.due(labels, self._attempt_labels, since):
            self.retrain(labels)
        elif (
            self.model is not None
            and self.clock() - self._scored_new_at >= NEW_ITEM_SCORING_SECONDS
        ):
            self._scored_new_at = self.clock()
            self.score(self.model)

    def take(self, message: Message) -> None:
        topic = message.topic()
        try:
            if topic == self.items_topic:
                self.state.add_item(parse_item(self.task_type, message.value()))
            elif topic == self.labels_topic:
                label = parse_label(message.value())
                if label is not None:
                    self.state.add_label(label)
        except Unusable as err:
            kind = "items" if topic == self.items_topic else "labels"
            self.metrics.skipped.labels(kind).inc()
            log.debug("skipped a message of %s at offset %s: %s", topic, message.offset(), err)

    def retrain(self, labels: int) -> None:
        self._attempt_labels, self._attempt_at = labels, self.clock()
        data = training_set(self.learning, self.state.items, self.state.label_values())
        started = time.monotonic()
        try:
            outcome = train(self.learning, data, self.min_labels)
        except Exception as err:  # a model that cannot be fitted must not stop the loop
            self.metrics.trainings.labels("failed").inc()
            self._error(f"training on {data.labels} human labels failed: {err!r}")
            log.exception("training failed")
            return
        if isinstance(outcome, CannotTrain):
            self.metrics.trainings.labels("waiting").inc()
            self.waiting_reason = outcome.reason
            log.info("cannot train yet, waiting for more labels: %s", outcome.reason)
            return
        previous = labels_of(self.model.version) if self.model else None
        if previous is not None and outcome.labels_trained_on < previous:
            # Only a payload change can shrink the labels on known items; keep the newer.
            log.warning(
                "kept %s: the new model has fewer labels", self.model and self.model.version
            )
            return
        self.metrics.trainings.labels("trained").inc()
        self.model, self.waiting_reason = outcome, None
        self.metrics.last_train.set(time.time())
        self.metrics.labels_trained_on.set(outcome.labels_trained_on)
        self.metrics.items_trained_on.set(outcome.items_trained_on)
        self.metrics.version.info({"version": outcome.version})
        log.info(
            "trained %s on %d labels of %d items (classes %s) in %.1fs",
            outcome.version,
            outcome.labels_trained_on,
            outcome.items_trained_on,
            list(outcome.classes),
            time.monotonic() - started,
        )
        self.score(outcome)

    def score(self, model: TrainedModel) -> None:
        pending = self.state.to_score(model.version)
        if not pending:
            return
        try:
            acked = self.publisher.publish(model.version, model.predict(pending))
        except KafkaException as err:
            self._error(f"publishing {len(pending)} predictions of {model.version} failed: {err}")
            log.warning("%s (retrying)", self.last_error)
            return
        self.state.mark_scored([item_id for item_id, _ in pending], model.version)
        self.metrics.predictions.inc(acked)
        if self.last_error:
            self.last_error = None
            self.metrics.last_error.info({"message": ""})
        log.info("published %d predictions of %s", acked, model.version)

    def _error(self, message: str) -> None:
        self.last_error = message
        self.metrics.last_error.info({"message": message[:500]})
        self.metrics.last_error_time.set(time.time())

    def alive(self) -> tuple[bool, dict[str, Any]]:
        stalled = self.clock() - self._turned_at
        return stalled < ALIVE_ALLOWANCE_SECONDS, {"secondsSinceLoop": round(stalled, 1)}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        details: dict[str, Any] = {
            "caughtUp": self.reader.caught_up,
            "version": self.model.version if self.model else None,
            "items": len(self.state.items),
            "humanLabels": self.state.human_labels,
        }
        if self.reader.missing_topics:
            details["missingTopics"] = self.reader.missing_topics
        if self.waiting_reason:
            details["waiting"] = self.waiting_reason
        if self.last_error:
            details["lastError"] = self.last_error
        return self.reader.caught_up, details
