"""Ingest: the campaign's items topic -> the items table.

An item message has key = the item's external id and a JSON value
    {"id": str, "payload": object, "priority": int (optional),
     "model": {"prediction": any, "confidence": number} (optional)}.

Delivery is at-least-once and the write idempotent: a batch of messages is written in one
transaction (labelops.store.items: upsert by id, dead letters unique by topic position),
and the consumer group's offsets are committed synchronously only after that transaction
committed. A crash between the two redelivers the batch, which then changes nothing.

A message that cannot become an item (not JSON, no id, key and id differ, payload not of
the campaign's task type, ...) is recorded in dead_letters with the reason and its offset
is committed like any other: it never stops the consumer. When the database refuses a
batch for its data, the batch is halved and each half retried, down to single messages,
so only the offending message is dead-lettered and a batch of thousands costs a few dozen
retries, not thousands. When the database is unreachable, the consumer rewinds to the
batch and tries again after a pause.

Speed: batches are large (BATCH_SIZE messages, one transaction, one upsert statement and
one offset commit each), and a message's Python cost is one fast check
(labelops.worker.ingest_messages); its raw bytes go to the database unchanged.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from psycopg_pool import ConnectionPool

from labelops.api.worker_configmap import WorkerConfig
from labelops.store.items import (
    DeadLetter,
    IngestOutcome,
    RawItem,
    statements_for,
    write_raw_batch,
)
from labelops.worker.ingest_messages import ItemMessages, parse_item_message

__all__ = ["IngestFailed", "Ingestor", "parse_item_message"]

log = logging.getLogger(__name__)

# Large enough that a transaction's fixed costs (commit, offset commit, round trips) are
# spread thin; small enough that a batch is a few MB and a second or so of work.
BATCH_SIZE = 10_000
RETRY_PAUSE_SECONDS = 2.0


class IngestFailed(RuntimeError):
    """The consumer cannot go on; restarting the worker is the way out."""


class Ingestor:
    """Consumes config.topics.items in consumer group config.consumer_group."""

    def __init__(
        self,
        pool: ConnectionPool[Any],
        config: WorkerConfig,
        bootstrap: str,
        *,
        batch_size: int = BATCH_SIZE,
        consumer_config: dict[str, Any] | None = None,
    ) -> None:
        self._pool = pool
        self._config = config
        self._statements = statements_for(config.schema_)
        self._messages = ItemMessages(config.task.type)
        self._batch_size = batch_size
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": config.consumer_group,
                "client.id": f"labelops-ingest-{config.name}",
                # Offsets are committed by hand, after the database commit.
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                **(consumer_config or {}),
            }
        )
        self._consumer.subscribe([config.topics.items])

    def run(self, stop: threading.Event) -> None:
        """Ingest until stop is set. Database outages are waited out; a fatal consumer
        error ends the loop with IngestFailed (the worker exits and is restarted)."""
        try:
            while not stop.is_set():
                try:
                    self.poll_once(timeout=1.0)
                except psycopg.OperationalError as err:
                    log.warning("ingest paused %.0fs: %s", RETRY_PAUSE_SECONDS, err)
                    stop.wait(RETRY_PAUSE_SECONDS)
        finally:
            self.close()

    def poll_once(self, timeout: float) -> int:
        """Consume up to one batch, write it, commit its offsets; returns messages handled
        (ingested or dead-lettered)."""
        messages = [m for m in self._consumer.consume(self._batch_size, timeout) if self._usable(m)]
        if not messages:
            return 0
        try:
            outcome = self._write(messages)
        except Exception:
            self._rewind(messages)
            raise
        if outcome.inserted or outcome.updated or outcome.dead_lettered:
            log.info(
                "ingested %d new, %d updated items; %d dead letters",
                outcome.inserted,
                outcome.updated,
                outcome.dead_lettered,
            )
        try:
            self._consumer.commit(offsets=_next_offsets(messages), asynchronous=False)
        except KafkaException as err:
            # E.g. the partitions moved to another worker meanwhile: it gets the batch
            # again, and the upsert makes that harmless.
            log.warning("committing offsets failed, the batch will be redelivered: %s", err)
        return len(messages)

    def close(self) -> None:
        self._consumer.close()

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.fatal():
            raise IngestFailed(f"the items consumer failed for good: {error}")
        # Transient (the broker restarting, the topic not created yet): librdkafka retries.
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("items topic: %s", error)
        return False

    def _write(self, messages: list[Message]) -> IngestOutcome:
        items, dead_letters = self._classify(messages)
        try:
            return self._transact(items, dead_letters)
        except (psycopg.DataError, psycopg.IntegrityError) as err:
            if len(messages) == 1:
                reason = f"database refused the item: {err}"
                return self._transact([], [_dead_letter(messages[0], reason)])
            log.warning("batch of %d refused (%s); writing it in halves", len(messages), err)
        half = len(messages) // 2
        return self._write(messages[:half]) + self._write(messages[half:])

    def _classify(self, messages: list[Message]) -> tuple[list[RawItem], list[DeadLetter]]:
        newest: dict[str, RawItem] = {}  # later messages of an id supersede earlier ones
        dead_letters = []
        accept = self._messages.accept
        for message in messages:
            try:
                item = accept(message.key(), message.value())
            except ValueError as err:
                dead_letters.append(_dead_letter(message, str(err)))
                continue
            newest[item.id] = item
        return list(newest.values()), dead_letters

    def _transact(self, items: list[RawItem], dead_letters: list[DeadLetter]) -> IngestOutcome:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            return write_raw_batch(cur, self._statements, items, dead_letters)

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


def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for message in messages:
        topic, partition, offset = _position(message)
        last[topic, partition] = max(last.get((topic, partition), -1), offset)
    return [TopicPartition(t, p, offset + 1) for (t, p), offset in last.items()]


def _position(message: Message) -> tuple[str, int, int]:
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    # Only error events lack a position, and those never get here.
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def _dead_letter(message: Message, reason: str) -> DeadLetter:
    topic, partition, offset = _position(message)
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        key=message.key(),
        value=message.value(),
        reason=reason,
    )
