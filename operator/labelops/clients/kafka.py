"""Kafka: observe a campaign's topics, then create, grow, reconfigure or delete them.

One AdminClient per operator, shared by all campaigns (librdkafka's admin handle is
thread-safe). Each call is bounded by a short timeout and runs in a worker thread, so an
unreachable broker fails a reconcile within seconds with KafkaUnavailable instead of
blocking the Kopf event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from labelops.api.backend_state import Topic
from labelops.clients.errors import KafkaUnavailable

_MISSING = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.UNKNOWN_TOPIC_ID}


def _code(err: KafkaException) -> int | None:
    first = err.args[0] if err.args else None
    return first.code() if isinstance(first, KafkaError) else None


class KafkaAdmin:
    def __init__(self, bootstrap: str, timeout: float = 5.0) -> None:
        self.bootstrap = bootstrap
        self.timeout = timeout
        self._admin: AdminClient | None = None
        self._lock = threading.Lock()

    def _client(self) -> AdminClient:
        with self._lock:
            if self._admin is None:
                millis = int(self.timeout * 1000)
                settings: dict[str, Any] = {
                    "bootstrap.servers": self.bootstrap,
                    "client.id": "labelops-operator",
                    "socket.connection.setup.timeout.ms": millis,
                    "socket.timeout.ms": max(millis, 10_000),
                    # Only critical librdkafka logs: an unreachable broker is reported once per
                    # operation as KafkaUnavailable, not as a line per reconnect attempt.
                    "log_level": 2,
                }
                self._admin = AdminClient(settings)
            return self._admin

    def _wait(self, future: Future[Any], what: str) -> Any:
        try:
            return future.result(timeout=self.timeout * 2)
        except FutureTimeout as err:
            raise KafkaUnavailable(
                f"Kafka at {self.bootstrap} did not answer within {self.timeout * 2:.0f}s ({what})"
            ) from err
        except KafkaException as err:
            code = _code(err)
            if code in (KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
                raise KafkaUnavailable(
                    f"Kafka at {self.bootstrap} is unreachable ({what}): {err.args[0]}"
                ) from err
            raise

    # --- observe ---------------------------------------------------------------------

    def _describe(self, names: Sequence[str]) -> dict[str, Topic | None]:
        admin = self._client()
        futures = admin.describe_topics(TopicCollection(list(names)), request_timeout=self.timeout)
        partitions: dict[str, tuple[int, int]] = {}
        found: dict[str, Topic | None] = {}
        for name, future in futures.items():
            try:
                description = self._wait(future, f"describe topic {name}")
            except KafkaException as err:
                if _code(err) in _MISSING:
                    found[name] = None
                    continue
                raise
            replicas = len(description.partitions[0].replicas) if description.partitions else 0
            partitions[name] = (len(description.partitions), replicas)
        if partitions:
            resources = [ConfigResource(ResourceType.TOPIC, name) for name in partitions]
            config_futures = admin.describe_configs(resources, request_timeout=self.timeout)
            for resource, future in config_futures.items():
                entries = self._wait(future, f"describe configs of {resource.name}")
                count, replication = partitions[resource.name]
                found[resource.name] = Topic(
                    resource.name,
                    count,
                    replication,
                    {key: entry.value for key, entry in entries.items()},
                )
        return found

    async def describe(self, names: Sequence[str]) -> dict[str, Topic | None]:
        """Each topic as it exists, or None when it does not."""
        return await asyncio.to_thread(self._describe, names)

    # --- act -------------------------------------------------------------------------

    def _create(self, topics: Sequence[Topic]) -> None:
        futures = self._client().create_topics(
            [
                NewTopic(t.name, t.partitions, t.replication_factor, config=dict(t.configs))
                for t in topics
            ],
            operation_timeout=self.timeout,
            request_timeout=self.timeout,
        )
        for name, future in futures.items():
            try:
                self._wait(future, f"create topic {name}")
            except KafkaException as err:
                # Created by an earlier pass that crashed before recording it: same outcome.
                if _code(err) != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise

    def _grow(self, totals: Mapping[str, int]) -> None:
        futures = self._client().create_partitions(
            [NewPartitions(name, total) for name, total in totals.items()],
            operation_timeout=self.timeout,
            request_timeout=self.timeout,
        )
        for name, future in futures.items():
            self._wait(future, f"add partitions to {name}")

    def _configure(self, configs: Mapping[str, Mapping[str, str]]) -> None:
        resources = [
            ConfigResource(
                ResourceType.TOPIC,
                name,
                incremental_configs=[
                    ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                    for key, value in values.items()
                ],
            )
            for name, values in configs.items()
        ]
        futures = self._client().incremental_alter_configs(resources, request_timeout=self.timeout)
        for resource, future in futures.items():
            self._wait(future, f"alter configs of {resource.name}")

    async def create(self, topics: Sequence[Topic]) -> None:
        if topics:
            await asyncio.to_thread(self._create, topics)

    async def grow_partitions(self, totals: Mapping[str, int]) -> None:
        if totals:
            await asyncio.to_thread(self._grow, totals)

    async def set_configs(self, configs: Mapping[str, Mapping[str, str]]) -> None:
        if configs:
            await asyncio.to_thread(self._configure, configs)

    def _delete(self, names: Sequence[str]) -> list[str]:
        futures = self._client().delete_topics(
            list(names), operation_timeout=self.timeout, request_timeout=self.timeout
        )
        deleted = []
        for name, future in futures.items():
            try:
                self._wait(future, f"delete topic {name}")
                deleted.append(name)
            except KafkaException as err:
                if _code(err) not in _MISSING:
                    raise
        return deleted

    async def delete(self, names: Sequence[str]) -> list[str]:
        """Delete the topics that exist; returns those that did."""
        return await asyncio.to_thread(self._delete, names)
