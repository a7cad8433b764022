"""Outbox relay: accepted labels (outbox rows) -> the campaign's labels topic.

Each round locks the oldest outbox rows (FOR UPDATE SKIP LOCKED, so relays of several
worker replicas share the work instead of publishing the same rows), produces them, waits
until Kafka acknowledged every one (acks=all), and deletes the acknowledged rows in the
same transaction that held the lock. A relay killed at any point leaves its rows in the
outbox (the transaction never committed), so the next relay publishes them again:
delivery is at-least-once, never lossy.

The message:
  key      the item's external id: all labels of an item land in one partition, in order
           per relay, which is what a consumer aggregating an item's N labels wants;
  value    the JSON the schema's submission functions build (store/functions/):
           {"labelId", "campaign": {"namespace", "name"}, "itemId", "labeler", "origin",
            "value", "ordinal", "labelsPerItem", "createdAt"}; ordinal == labelsPerItem
           marks the label that completed the item;
  headers  label-id: the label's UUID. A relay that dies after Kafka acknowledged but
           before its commit republishes: consumers de-duplicate by labelId.

After each pass the backlog gauge (labelops.worker.metrics.PipelineMetrics) is set: 0 when
the pass found the outbox empty, else one count of the rows left, bounded by
OUTBOX_BACKLOG_COUNT_LIMIT (a healthy outbox is small; a huge one need not be counted
exactly to alert on).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from psycopg import sql

from labelops.store.outages import DATABASE_OUTAGES
from labelops.store.queries import Queries
from labelops.worker.pipeline import Pipeline

log = logging.getLogger(__name__)

BATCH_SIZE = 500
DELIVERY_TIMEOUT_SECONDS = 30.0
IDLE_POLL_SECONDS = 0.2
RETRY_PAUSE_SECONDS = 2.0
OUTBOX_BACKLOG_COUNT_LIMIT = 100_000


class RelayError(RuntimeError):
    """Kafka did not acknowledge some messages; their rows stay in the outbox."""


class RelayFailed(RuntimeError):
    """The producer failed for good (librdkafka fatal error); the worker must restart."""


# What the relay waits out: a database out of service (unreachable, restarting, read-only after
# a failover) or a broker that does not acknowledge; the rows stay in the outbox meanwhile.
PASSING_FAILURES: tuple[type[Exception], ...] = (*DATABASE_OUTAGES, KafkaException, RelayError)


class OutboxRelay:
    def __init__(
        self,
        pipeline: Pipeline,
        *,
        batch_size: int = BATCH_SIZE,
        delivery_timeout: float = DELIVERY_TIMEOUT_SECONDS,
    ) -> None:
        config = pipeline.config
        self._pool = pipeline.pool
        self._metrics = pipeline.metrics
        self._count_backlog = sql.SQL(
            "SELECT count(*) FROM (SELECT 1 FROM {}.outbox LIMIT {}) AS waiting"
        ).format(sql.Identifier(config.schema_), sql.Literal(OUTBOX_BACKLOG_COUNT_LIMIT))
        self._topic = config.topics.labels
        self._queries = Queries(config.schema_)
        self._batch_size = batch_size
        self._delivery_timeout = delivery_timeout
        self._producer = Producer(
            pipeline.kafka.client_config(
                {
                    "client.id": f"labelops-outbox-{config.name}",
                    "acks": "all",
                    # No duplicates from the producer's own retries; duplicates after a crash
                    # are the consumers' to drop by labelId.
                    "enable.idempotence": True,
                    "linger.ms": 5,
                    # Every message gets a delivery report before flush() gives up waiting.
                    "message.timeout.ms": int(delivery_timeout * 1000),
                }
            )
        )

    def run(self, stop: threading.Event) -> None:
        """Relay until stop is set; on stop, one last round publishes what is pending.
        Outages of the database or Kafka are waited out; RelayFailed ends the loop when
        the producer cannot go on (the worker exits and is restarted)."""
        while not stop.is_set():
            try:
                if self.relay_once() == 0:
                    stop.wait(IDLE_POLL_SECONDS)
            except PASSING_FAILURES as err:
                if isinstance(err, KafkaException) and err.args[0].fatal():
                    raise RelayFailed(f"the labels producer failed for good: {err}") from err
                log.warning("outbox relay paused %.0fs: %s", RETRY_PAUSE_SECONDS, err)
                stop.wait(RETRY_PAUSE_SECONDS)
        try:
            while self.relay_once() == self._batch_size:
                pass
        except PASSING_FAILURES as err:
            log.warning("outbox relay stopped with labels pending (next relay sends them): %s", err)

    def relay_once(self) -> int:
        """Publish up to one batch of outbox rows; returns how many were acknowledged."""
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            rows = cur.execute(
                self._queries.lock_outbox_batch, {"limit": self._batch_size}
            ).fetchall()
            if not rows:
                self._metrics.outbox_backlog.set(0)
                return 0
            acked, failures = self._publish(rows)
            if acked:
                cur.execute(self._queries.delete_outbox_rows, {"ids": acked})
            # Rows other relays hold count as waiting too: they are not delivered yet.
            waiting = cur.execute(self._count_backlog).fetchone()
        self._metrics.outbox_backlog.set(waiting[0] if waiting else 0)
        if failures:
            raise RelayError(
                f"{len(failures)} of {len(rows)} labels were not acknowledged by Kafka "
                f"(topic {self._topic}), they stay in the outbox: {failures[0]}"
            )
        return len(acked)

    def _publish(self, rows: list[tuple[Any, ...]]) -> tuple[list[int], list[str]]:
        acked: list[int] = []
        failures: list[str] = []
        fatal: list[KafkaError] = []

        def report(outbox_id: int) -> Any:
            def on_delivery(err: KafkaError | None, _msg: Message) -> None:
                if err is None:
                    acked.append(outbox_id)
                    return
                failures.append(str(err))
                if err.fatal():
                    fatal.append(err)

            return on_delivery

        for outbox_id, label_id, key, message in rows:
            self._produce(key, message, label_id, report(outbox_id))
        pending = self._producer.flush(self._delivery_timeout + 5.0)
        if fatal:
            # Raising rolls the batch's transaction back, acknowledged rows included: the
            # restarted worker publishes them again (consumers drop duplicates by labelId).
            raise RelayFailed(f"the labels producer failed for good: {fatal[0]}")
        if pending:
            failures.append(f"{pending} messages still in flight after the delivery timeout")
        return acked, failures

    def _produce(self, key: str, message: str, label_id: str, on_delivery: Any) -> None:
        while True:
            try:
                self._producer.produce(
                    self._topic,
                    key=key.encode("utf-8"),
                    value=message.encode("utf-8"),
                    headers=[("label-id", label_id.encode("ascii"))],
                    on_delivery=on_delivery,
                )
                return
            except BufferError:
                # The local queue is full: serve delivery reports to make room.
                self._producer.poll(0.1)
