"""Kafka I/O of the learner: read whole topics from the beginning, publish predictions.

The reader assigns every partition by hand from its first offset and never commits: the
learner keeps no state outside its memory, so every start reads both topics again, and its
consumer group is never used for offsets (a broker's group ACL only matters for commits).
It records each partition's end offset when it was assigned; the learner trains only once
it has read up to those ends ("caught up"), so a restarted learner never publishes a model
trained on a prefix of the labels, whose version would go backwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from labelops.learner.messages import prediction_message
from labelops.learner.training import Prediction

log = logging.getLogger(__name__)

METADATA_TIMEOUT_SECONDS = 10.0
DELIVERY_TIMEOUT_SECONDS = 30.0


class KafkaFailed(RuntimeError):
    """A client failed for good (librdkafka fatal error): the learner exits and restarts."""


class TopicReader:
    def __init__(self, kafka_config: dict[str, Any], topics: Sequence[str], client_id: str):
        self.topics = list(topics)
        self._consumer = Consumer(
            {
                **kafka_config,
                # Required by the client; never joined (assign, not subscribe) nor committed.
                "group.id": f"{client_id}.unused",
                "client.id": client_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            }
        )
        self._ends: dict[tuple[str, int], int] = {}  # end offset when assigned
        self._done: set[tuple[str, int]] = set()  # partitions read up to that end
        self.missing_topics: list[str] = list(topics)

    def assign_new_partitions(self) -> None:
        """Assign partitions not read yet (new topics or added partitions) from the start."""
        new: list[TopicPartition] = []
        missing = []
        for topic in self.topics:
            metadata = self._consumer.list_topics(topic, timeout=METADATA_TIMEOUT_SECONDS)
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                missing.append(topic)
                continue
            for partition in sorted(found.partitions):
                if (topic, partition) in self._ends:
                    continue
                low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=METADATA_TIMEOUT_SECONDS
                )
                self._ends[topic, partition] = high
                if high <= low:
                    self._done.add((topic, partition))
                new.append(TopicPartition(topic, partition, OFFSET_BEGINNING))
        self.missing_topics = missing
        if new:
            self._consumer.incremental_assign(new)
            log.info("reading %d partitions from the beginning: %s", len(new), _names(new))

    @property
    def caught_up(self) -> bool:
        return not self.missing_topics and set(self._ends) <= self._done

    def poll(self, max_messages: int, timeout: float) -> list[Message]:
        usable = []
        for message in self._consumer.consume(max_messages, timeout):
            error = message.error()
            position = (message.topic() or "", message.partition() or 0)
            if error is None:
                offset = message.offset() or 0
                if offset + 1 >= self._ends.get(position, 0):
                    self._done.add(position)
                usable.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                self._done.add(position)
            elif error.fatal():
                raise KafkaFailed(f"the topic reader failed for good: {error}")
            else:
                log.warning("reading %s: %s", position[0], error)
        return usable

    def close(self) -> None:
        self._consumer.close()


class PredictionPublisher:
    def __init__(self, kafka_config: dict[str, Any], topic: str, client_id: str) -> None:
        self.topic = topic
        self._producer = Producer(
            {
                **kafka_config,
                "client.id": client_id,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 20,
                "message.timeout.ms": int(DELIVERY_TIMEOUT_SECONDS * 1000),
            }
        )

    def publish(self, version: str, predictions: Iterable[Prediction]) -> int:
        """Produce every prediction and wait for Kafka's acknowledgements; returns how many
        were acknowledged. Raises KafkaException (its first error) when some were not."""
        acked = 0
        failures: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _message: Message) -> None:
            nonlocal acked
            if err is None:
                acked += 1
            else:
                failures.append(err)

        for prediction in predictions:
            key, value = prediction_message(
                prediction.item_id, version, prediction.value, prediction.confidence
            )
            while True:
                try:
                    self._producer.produce(
                        self.topic, key=key, value=value, on_delivery=on_delivery
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)  # queue full: serve delivery reports
        pending = self._producer.flush(DELIVERY_TIMEOUT_SECONDS + 5.0)
        if failures:
            if failures[0].fatal():
                raise KafkaFailed(f"the predictions producer failed for good: {failures[0]}")
            raise KafkaException(failures[0])
        if pending:
            raise KafkaException(
                KafkaError(KafkaError._MSG_TIMED_OUT, f"{pending} predictions unacknowledged")
            )
        return acked

    def close(self) -> None:
        self._producer.flush(5.0)


def _names(partitions: Sequence[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions)
