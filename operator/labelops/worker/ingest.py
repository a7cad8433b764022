"""Ingest: the campaign's items and predictions topics -> the items table.

An item message has key = the item's external id and a JSON value
    {"id": str, "payload": object, "priority": int (optional),
     "model": {"version": str, "prediction": <label value>, "confidence": 0..1} (optional),
     "gold": {"value": <label value>} (optional: a gold item, its known answer)}.
A prediction message (topic `<prefix>.predictions`, when the config names it) has key =
the item id and a JSON value {"id": str, "model": {"version", "prediction", "confidence"}}:
a model service's score of an item, after (or before) the item arrived. The latest
prediction of an item wins (Kafka keeps one item's messages in order); one that comes
before its item is kept for it (early_predictions) and applied when the item arrives.
The write that scores an item also decides what follows from the score, as the schema's
after_scoring would (its audit and claim order under the campaign's policy, its model
version registered), so each item is written once; then auto_accept, in the same
transaction, completes what a trusted version's threshold covers.

Delivery is at-least-once and the write idempotent: a batch of messages (both topics) is
written in one transaction (labelops.store.items: upsert by id, dead letters unique by
topic position), and the consumer group's offsets are committed synchronously only after
that transaction committed. A crash between the two redelivers the batch, which then
changes nothing.

A message that cannot be used (not JSON, no id, key and id differ, payload not of the
campaign's task type, a prediction that is not a label value of the task, a confidence
outside [0, 1], ...) is recorded in dead_letters with the reason and its offset is
committed like any other: it never stops the consumer. When the database refuses a batch
for its data, the batch is halved and each half retried, down to single messages, so only
the offending message is dead-lettered and a batch of thousands costs a few dozen retries,
not thousands. When the database is out of service (unreachable, restarting, or read-only
after a failover: labelops.store.outages), the consumer rewinds to the batch and tries again
after a pause; the loop never ends for it. A broker outage is librdkafka's to wait out: the
consumer reconnects by itself and goes on from its committed offsets.

Speed: batches are large (BATCH_SIZE messages, one upsert statement per topic and one
offset commit each), and a poll pipelines them: while batch N is written, batch N+1 is
read from Kafka and sorted out (parsed, checked), so the process's work and the
database's overlap instead of taking turns. N+1 is handed to the database only once N's
transactions committed and N's offsets were committed (writes and offset commits stay in
Kafka order); a poll returns once every batch it read is committed, or raises with all of
them rewound. Each batch is split by key (arrival lock bucket) over WRITERS transactions
that run at the same time without waiting for each other's locks, and a message's Python
cost is one fast check (labelops.worker.ingest_messages); its raw bytes go to the database
unchanged.

Metrics (labelops.worker.metrics.PipelineMetrics): after every poll, the lag (each assigned
partition's high watermark, as the last fetch reported it, minus the consumer's position,
summed: local figures, no round trip); after each committed transaction, its newly recorded
dead letters by topic.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from labelops.api.tasktypes import LabelValidator, bounded
from labelops.store.items import (
    DeadLetter,
    IngestOutcome,
    RawItem,
    RawPrediction,
    UnfitPrediction,
    arrival_bucket,
    auto_accept_scored,
    bump_ingest_counters,
    lock_arrivals,
    pick_shard,
    record_dead_letters,
    statements_for,
    upsert_items,
    upsert_predictions,
)
from labelops.store.outages import DATABASE_OUTAGES
from labelops.worker.ingest_messages import ItemMessages, PredictionMessages, parse_item_message
from labelops.worker.pipeline import Pipeline

__all__ = ["IngestFailed", "Ingestor", "parse_item_message"]

log = logging.getLogger(__name__)

# Large enough that a transaction's fixed costs (commit, offset commit, round trips) are
# spread thin; small enough that a batch is a few MB and a second or so of work.
BATCH_SIZE = 10_000
RETRY_PAUSE_SECONDS = 2.0
# How long a poll goes on pipelining batches (reading the next while one is written) before
# it returns, and how long it waits for a next batch to fill while one is being written.
PIPELINE_SECONDS = 1.0
NEXT_BATCH_WAIT_SECONDS = 0.1
METADATA_REFRESH_MS = 5000
# Transactions written at the same time, one per group of partitions: the database does
# each batch on one core, and on a busy machine each connection gets its own share of the
# cores. Two keep the worker's pool (shared with the HTTP threads) mostly free.
WRITERS = 2


class IngestFailed(RuntimeError):
    """The consumer cannot go on; restarting the worker is the way out."""


@dataclass
class Batch:
    """A batch's messages sorted out: the newest item and prediction per id (later
    messages of an id supersede earlier ones) and the dead letters."""

    items: dict[str, RawItem] = field(default_factory=dict)
    predictions: dict[str, RawPrediction] = field(default_factory=dict)
    prediction_messages: dict[str, Message] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class Ingestor:
    """Consumes config.topics.items (and config.topics.predictions, when the config has
    it) in consumer group config.consumer_group."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        batch_size: int = BATCH_SIZE,
        writers: int = WRITERS,
        consumer_config: dict[str, Any] | None = None,
    ) -> None:
        config = pipeline.config
        self._pool = pipeline.pool
        self._metrics = pipeline.metrics
        self._writers = writers
        # Writers run beside the thread that polls, even just one: that is the pipeline.
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, writers), thread_name_prefix="ingest-writer"
        )
        self._config = config
        self._statements = statements_for(config.schema_, config.task.type)
        self._items = ItemMessages(config.task)
        self._predictions = PredictionMessages(config.task)
        self._labels = LabelValidator(config.task)
        self._batch_size = batch_size
        self._items_topic = config.topics.items
        predictions = config.topics.predictions
        self._consumer = Consumer(
            pipeline.kafka.client_config(
                {
                    "group.id": config.consumer_group,
                    "client.id": f"labelops-ingest-{config.name}",
                    # Offsets are committed by hand, after the database commit.
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    # A topic that appears after the consumer joined (the predictions topic of
                    # a campaign that just got a model) is taken up within seconds, not at
                    # librdkafka's default 5-minute metadata refresh.
                    "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
                    **(consumer_config or {}),
                }
            )
        )
        self._consumer.subscribe([self._items_topic, *([predictions] if predictions else [])])

    def run(self, stop: threading.Event) -> None:
        """Ingest until stop is set. Database outages are waited out; a fatal consumer
        error ends the loop with IngestFailed (the worker exits and is restarted)."""
        try:
            while not stop.is_set():
                try:
                    self.poll_once(timeout=1.0)
                except DATABASE_OUTAGES as err:
                    log.warning("ingest paused %.0fs: %s", RETRY_PAUSE_SECONDS, err)
                    stop.wait(RETRY_PAUSE_SECONDS)
        finally:
            self.close()

    def poll_once(self, timeout: float) -> int:
        """Consume, write and commit batches, one being read while the one before is written
        (for up to PIPELINE_SECONDS, while messages keep coming); returns messages handled
        (ingested, applied or dead-lettered), every one of them committed."""
        messages = self._consume(timeout)
        if not messages:
            self._measure_lag()
            return 0
        handled = 0
        deadline = time.monotonic() + PIPELINE_SECONDS
        writing = self._submit(self._prepare(messages))
        while True:
            following: list[Message] = []
            unusable: IngestFailed | None = None
            if time.monotonic() < deadline:
                try:
                    following = self._consume(NEXT_BATCH_WAIT_SECONDS)
                except IngestFailed as err:  # raised once the batch being written is committed
                    unusable = err
            prepared = self._prepare(following) if following else []
            try:
                outcome = self._outcome(writing)
            except Exception:
                self._rewind([m for group, _ in writing for m in group] + following)
                raise
            handled += self._commit([m for group, _ in writing for m in group], outcome)
            if unusable is not None:
                raise unusable
            if not following:
                break
            writing = self._submit(prepared)
        self._measure_lag()
        return handled

    def _consume(self, timeout: float) -> list[Message]:
        return [m for m in self._consumer.consume(self._batch_size, timeout) if self._usable(m)]

    def _commit(self, messages: list[Message], outcome: IngestOutcome) -> int:
        """After the batch's transactions committed: log it and commit its offsets."""
        if any((outcome.inserted, outcome.updated, outcome.dead_lettered, outcome.scored)):
            log.info(
                "ingested %d new, %d updated items; %d scored, %d early predictions;"
                " %d dead letters",
                outcome.inserted,
                outcome.updated,
                outcome.scored,
                outcome.early,
                outcome.dead_lettered,
            )
        try:
            self._consumer.commit(offsets=_next_offsets(messages), asynchronous=False)
        except KafkaException as err:
            # E.g. the partitions moved to another worker meanwhile: it gets the batch
            # again, and the upsert makes that harmless.
            log.warning("committing offsets failed, the batch will be redelivered: %s", err)
        return len(messages)

    def _measure_lag(self) -> None:
        """The lag gauge from what librdkafka already knows: positions and the watermarks
        of the last fetch (a partition not fetched yet has none and counts 0)."""
        try:
            positions = self._consumer.position(self._consumer.assignment())
            lag = 0
            for tp in positions:
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                lag += partition_lag(high, tp.offset)
        except KafkaException as err:
            log.debug("ingest lag not measured: %s", err)
            return
        self._metrics.ingest_lag.set(lag)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self._consumer.close()

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.fatal():
            raise IngestFailed(f"the ingest consumer failed for good: {error}")
        # Transient (the broker restarting, the topic not created yet): librdkafka retries.
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("ingest topics: %s", error)
        return False

    def _prepare(self, messages: list[Message]) -> list[tuple[list[Message], Batch]]:
        """The batch split by key over the writers (by arrival lock bucket: halves of about
        the same size however many partitions there are), each group sorted out.

        An item's messages (its item and prediction messages alike, their key is its id)
        all land in one group, in their Kafka order, and the groups never touch the same
        item nor wait for each other's arrival locks (labelops.store.items)."""
        writers = self._writers
        if writers <= 1:
            return [(messages, self._classify(messages))]
        groups: dict[int, list[Message]] = {}
        for message in messages:
            key = message.key()
            group = arrival_bucket(key) if key is not None else message.partition() or 0
            groups.setdefault(group % writers, []).append(message)
        return [(group, self._classify(group)) for group in groups.values()]

    def _submit(
        self, prepared: list[tuple[list[Message], Batch]]
    ) -> list[tuple[list[Message], Future[IngestOutcome]]]:
        """Each group written in its own transaction, at the same time."""
        return [
            (group, self._executor.submit(self._write, group, batch)) for group, batch in prepared
        ]

    @staticmethod
    def _outcome(writing: list[tuple[list[Message], Future[IngestOutcome]]]) -> IngestOutcome:
        """Once every group's transaction ended: the sum, or the first failure."""
        total = IngestOutcome(0, 0, 0)
        failure: BaseException | None = None
        for _, future in writing:
            try:
                total += future.result()
            except Exception as err:  # the first failure is raised once all are done
                failure = failure or err
        if failure is not None:
            raise failure
        return total

    def _write(self, messages: list[Message], batch: Batch | None = None) -> IngestOutcome:
        try:
            return self._transact(batch if batch is not None else self._classify(messages))
        except (psycopg.DataError, psycopg.IntegrityError) as err:
            if len(messages) == 1:
                reason = f"database refused the message: {err}"
                return self._transact(Batch(dead_letters=[_dead_letter(messages[0], reason)]))
            log.warning("batch of %d refused (%s); writing it in halves", len(messages), err)
        half = len(messages) // 2
        return self._write(messages[:half]) + self._write(messages[half:])

    def _classify(self, messages: list[Message]) -> Batch:
        batch = Batch()
        items, predictions = batch.items, batch.predictions
        accept_item, accept_prediction = self._items.accept, self._predictions.accept
        items_topic = self._items_topic
        for message in messages:
            try:
                if message.topic() == items_topic:
                    item = accept_item(message.key(), message.value())
                    items[item.id] = item
                else:
                    prediction = accept_prediction(message.key(), message.value())
                    predictions[prediction.id] = prediction
                    batch.prediction_messages[prediction.id] = message
            except ValueError as err:
                batch.dead_letters.append(_dead_letter(message, str(err)))
        return batch

    def _transact(self, batch: Batch) -> IngestOutcome:
        st = self._statements
        shard = pick_shard()  # auto_accept's counts and ours: one shard lock, taken last
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            lock_arrivals(cur, st, items=batch.items, predictions=batch.predictions)
            inserted = updated = gold = early = 0
            scored: list[int] = []
            dead_letters = list(batch.dead_letters)
            # Items first: a prediction in the same batch as its item then finds it.
            if batch.items:
                items = upsert_items(cur, st, list(batch.items.values()))
                inserted, updated, gold = items.inserted, items.updated, items.gold
                scored = items.scored_ids
                if items.unfit_early:
                    log.warning(
                        "%d early predictions did not fit their items and were dropped",
                        items.unfit_early,
                    )
            if batch.predictions:
                predictions = upsert_predictions(cur, st, list(batch.predictions.values()))
                scored += predictions.scored_ids
                early = predictions.early
                dead_letters += [
                    _dead_letter(batch.prediction_messages[u.item_id], self._unfit_reason(batch, u))
                    for u in predictions.unfit
                ]
            auto_accept_scored(cur, st, scored, shard)
            recorded_by_topic = {
                topic: record_dead_letters(cur, st, letters)
                for topic, letters in _by_topic(dead_letters).items()
            }
            recorded = sum(recorded_by_topic.values())
            bump_ingest_counters(
                cur, st, shard, items=inserted, gold_items=gold, dead_lettered=recorded
            )
        # Counted once the transaction committed: a rolled back batch recorded nothing.
        for topic, newly in recorded_by_topic.items():
            self._metrics.count_dead_letters(self._topic_role(topic), newly)
        return IngestOutcome(inserted, updated, recorded, len(scored), early)

    def _topic_role(self, topic: str) -> str:
        return "items" if topic == self._items_topic else "predictions"

    def _unfit_reason(self, batch: Batch, unfit: UnfitPrediction) -> str:
        prediction = orjson.loads(batch.predictions[unfit.item_id].raw)["model"]["prediction"]
        payload = {"responses": [{"id": i, "text": ""} for i in unfit.response_ids]}
        found = self._labels.violations(payload, prediction)
        details = "; ".join(
            f"{v.pointer.replace('/value', '/model/prediction', 1)}: {v.message}" for v in found
        )
        return f"prediction does not fit item {unfit.item_id!r}: {details or 'refused'}"

    def _rewind(self, messages: list[Message]) -> None:
        first: dict[tuple[str, int], int] = {}
        for message in messages:
            topic, partition, offset = _position(message)
            first[topic, partition] = min(first.get((topic, partition), offset), offset)
        for (topic, partition), offset in first.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as err:
                log.warning("rewinding %s[%d] failed: %s", topic, partition, err)


def partition_lag(high_watermark: int, position: int) -> int:
    """Messages behind on one partition; 0 while either figure is unknown (negative, as
    librdkafka reports an offset it has not learnt yet)."""
    if high_watermark < 0 or position < 0 or position == OFFSET_INVALID:
        return 0
    return max(0, high_watermark - position)


def _by_topic(dead_letters: list[DeadLetter]) -> dict[str, list[DeadLetter]]:
    # One insert per topic (two at most, and only when both topics had bad messages), so
    # the newly recorded count of each is exact even when a redelivery repeats some.
    grouped: dict[str, list[DeadLetter]] = {}
    for letter in dead_letters:
        grouped.setdefault(letter.topic, []).append(letter)
    return grouped


def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
    # A partition's messages come in offset order: its last one is its highest. (Once per
    # message of every batch: kept to plain method calls.)
    last: dict[tuple[str | None, int | None], int | None] = {}
    for message in messages:
        last[message.topic(), message.partition()] = message.offset()
    return [TopicPartition(t, p, offset + 1) for (t, p), offset in last.items()]  # type: ignore[arg-type, operator]


def _position(message: Message) -> tuple[str, int, int]:
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    # Only error events lack a position, and those never get here.
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


DEAD_LETTER_REASON_CHARS = 4000


def _dead_letter(message: Message, reason: str) -> DeadLetter:
    topic, partition, offset = _position(message)
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        key=message.key(),
        value=message.value(),
        # Reasons quote ids and keys: one of 1 MiB, or with a NUL, must still be storable.
        reason=bounded(reason, DEAD_LETTER_REASON_CHARS),
    )
