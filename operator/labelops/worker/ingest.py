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
batch for its data, the batch is retried one message at a time so only the offending
message is dead-lettered. When the database is unreachable, the consumer rewinds to the
batch and tries again after a pause.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from jsonschema import Draft202012Validator
from psycopg_pool import ConnectionPool

from labelops.api.campaign import TaskType
from labelops.api.tasktypes import Violation, payload_violations
from labelops.api.workerconfig import WorkerConfig
from labelops.store.items import DeadLetter, IngestOutcome, ItemRecord, write_ingest_batch
from labelops.store.jsoncheck import storage_violations
from labelops.store.queries import Queries

log = logging.getLogger(__name__)

BATCH_SIZE = 500
RETRY_PAUSE_SECONDS = 2.0
MAX_ID_LENGTH = 512
UNADDRESSABLE_IDS = frozenset({".", ".."})
INT32 = 2**31

ITEM_MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "payload"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
        "payload": {"type": "object"},
        "priority": {"type": "integer", "minimum": -INT32, "maximum": INT32 - 1},
        "model": {
            "type": "object",
            "properties": {"confidence": {"type": "number"}},
        },
    },
}
_MESSAGE_VALIDATOR = Draft202012Validator(ITEM_MESSAGE_SCHEMA)


def parse_item_message(task_type: TaskType, key: bytes | None, value: bytes | None) -> ItemRecord:
    """The item a message carries; ValueError with the reason when it carries none."""
    if value is None:
        raise ValueError("message has no value (tombstones cannot delete items)")
    try:
        document = json.loads(value.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as err:
        raise ValueError(f"value is not UTF-8: {err}") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"value is not JSON: {err}") from err
    except RecursionError as err:
        raise ValueError("value is not usable JSON: it nests too deeply") from err
    problems = [
        Violation(_pointer(e.absolute_path), e.message)
        for e in sorted(_MESSAGE_VALIDATOR.iter_errors(document), key=lambda e: e.json_path)
    ]
    if problems:
        raise ValueError(f"value is not an item message: {_details(problems)}")
    item_id: str = document["id"]
    if item_id in UNADDRESSABLE_IDS:
        raise ValueError(
            f"id {item_id!r} cannot be an item id: in a URL path (/v1/tasks/{item_id}/labels) "
            "browsers and proxies resolve it as a dot-segment, even percent-encoded, so the "
            "labeling page could never submit its label"
        )
    if key is None:
        raise ValueError(f"message has no key; the key must be the item id {item_id!r}")
    if key != item_id.encode("utf-8"):
        raise ValueError(
            f"message key {key.decode('utf-8', 'replace')!r} does not match id {item_id!r}"
        )
    unstorable = storage_violations(document, "")
    if unstorable:
        raise ValueError(f"item cannot be stored: {_details(unstorable)}")
    payload = document["payload"]
    unfit = payload_violations(task_type, payload)
    if unfit:
        raise ValueError(f"payload does not fit task type {task_type.value!r}: {_details(unfit)}")
    model = document.get("model", {})
    return ItemRecord(
        id=item_id,
        payload=payload,
        priority=document.get("priority", 0),
        model_prediction=model.get("prediction"),
        model_confidence=model.get("confidence"),
    )


def _details(violations: list[Violation]) -> str:
    return "; ".join(f"{v.pointer}: {v.message}" for v in violations)


def _pointer(path: Any) -> str:
    return "".join(f"/{p}" for p in path) or "/"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"value is not JSON: {name} is not a JSON number")


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
        self._queries = Queries(config.schema_)
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
            log.warning("batch refused (%s); writing its messages one by one", err)
        totals = IngestOutcome(0, 0, 0)
        for message in messages:
            one_items, one_dead = self._classify([message])
            try:
                outcome = self._transact(one_items, one_dead)
            except (psycopg.DataError, psycopg.IntegrityError) as err:
                outcome = self._transact(
                    [], [_dead_letter(message, f"database refused the item: {err}")]
                )
            totals = IngestOutcome(
                totals.inserted + outcome.inserted,
                totals.updated + outcome.updated,
                totals.dead_lettered + outcome.dead_lettered,
            )
        return totals

    def _classify(self, messages: list[Message]) -> tuple[list[ItemRecord], list[DeadLetter]]:
        newest: dict[str, ItemRecord] = {}  # later messages of an id supersede earlier ones
        dead_letters = []
        for message in messages:
            try:
                item = parse_item_message(self._config.task.type, message.key(), message.value())
            except ValueError as err:
                dead_letters.append(_dead_letter(message, str(err)))
                continue
            newest[item.id] = item
        return list(newest.values()), dead_letters

    def _transact(self, items: list[ItemRecord], dead_letters: list[DeadLetter]) -> IngestOutcome:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            return write_ingest_batch(cur, self._queries, items, dead_letters)

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
