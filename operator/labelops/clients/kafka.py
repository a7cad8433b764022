"""Kafka: observe a campaign's topics, then create, grow, reconfigure or delete them; and its
SCRAM users and their ACLs (operator/kafka_access.py decides which).

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
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from labelops.api.backend_state import Topic
from labelops.api.kafka_connection import KafkaConnection
from labelops.clients.errors import KafkaUnavailable

_MISSING = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.UNKNOWN_TOPIC_ID}


def _code(err: KafkaException) -> int | None:
    first = err.args[0] if err.args else None
    return first.code() if isinstance(first, KafkaError) else None


class KafkaAdmin:
    def __init__(self, connection: KafkaConnection, timeout: float = 5.0) -> None:
        self.connection = connection
        self.bootstrap = connection.bootstrap
        self.timeout = timeout
        self._admin: AdminClient | None = None
        self._lock = threading.Lock()

    def _client(self) -> AdminClient:
        with self._lock:
            if self._admin is None:
                millis = int(self.timeout * 1000)
                settings: dict[str, Any] = {
                    "client.id": "labelops-operator",
                    "socket.connection.setup.timeout.ms": millis,
                    "socket.timeout.ms": max(millis, 10_000),
                    # Only critical librdkafka logs: an unreachable broker is reported once per
                    # operation as KafkaUnavailable, not as a line per reconnect attempt.
                    "log_level": 2,
                }
                self._admin = AdminClient(self.connection.client_config(settings))
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

    # --- users and ACLs ------------------------------------------------------------------

    def _existing_users(self, users: Sequence[str]) -> set[str]:
        futures: Any = self._client().describe_user_scram_credentials(
            list(users), request_timeout=self.timeout
        )
        found = set()
        for user, future in futures.items():
            try:
                description = self._wait(future, f"describe SCRAM user {user}")
            except KafkaException as err:
                if _code(err) == KafkaError.RESOURCE_NOT_FOUND:
                    continue
                raise
            if description.scram_credential_infos:
                found.add(user)
        return found

    async def existing_users(self, users: Sequence[str]) -> set[str]:
        """Those of users that have SCRAM credentials."""
        return await asyncio.to_thread(self._existing_users, users)

    def _alter_users(self, alterations: list[Any], what: str) -> None:
        futures = self._client().alter_user_scram_credentials(
            alterations, request_timeout=self.timeout
        )
        for user, future in futures.items():
            try:
                self._wait(future, f"{what} SCRAM user {user}")
            except KafkaException as err:
                # Deleting a user that is already gone: a crashed pass's work, same outcome.
                if not (what == "delete" and _code(err) == KafkaError.RESOURCE_NOT_FOUND):
                    raise

    async def set_passwords(
        self, passwords: Mapping[str, str], mechanism: str, iterations: int
    ) -> None:
        """Create (or reset) each user's SCRAM credential for mechanism."""
        info = ScramCredentialInfo(ScramMechanism[mechanism.replace("-", "_")], iterations)
        upserts: list[Any] = [
            UserScramCredentialUpsertion(user, info, password.encode())
            for user, password in passwords.items()
        ]
        if upserts:
            await asyncio.to_thread(self._alter_users, upserts, "set password of")

    async def delete_users(self, users: Sequence[str], mechanism: str) -> None:
        value = ScramMechanism[mechanism.replace("-", "_")]
        deletions: list[Any] = [UserScramCredentialDeletion(user, value) for user in users]
        if deletions:
            await asyncio.to_thread(self._alter_users, deletions, "delete")

    @staticmethod
    def _filter(principal: str, binding: AclBinding | None = None) -> AclBindingFilter:
        """Every ACL of principal, or (with binding) exactly that one."""
        # The stubs say str, librdkafka's filters take None for "any name" and "any host".
        anything: Any = None
        if binding is None:
            return AclBindingFilter(
                ResourceType.ANY, anything, ResourcePatternType.ANY, principal, anything,
                AclOperation.ANY, AclPermissionType.ANY,
            )  # fmt: skip
        return AclBindingFilter(
            binding.restype, binding.name, binding.resource_pattern_type, principal,
            binding.host, binding.operation, binding.permission_type,
        )  # fmt: skip

    def _acls_of(self, principal: str) -> set[AclBinding]:
        future = self._client().describe_acls(self._filter(principal), request_timeout=self.timeout)
        return set(self._wait(future, f"describe ACLs of {principal}"))

    async def acls_of(self, principal: str) -> set[AclBinding]:
        return await asyncio.to_thread(self._acls_of, principal)

    def _create_acls(self, bindings: Sequence[AclBinding]) -> None:
        futures = self._client().create_acls(list(bindings), request_timeout=self.timeout)
        for binding, future in futures.items():
            self._wait(future, f"create ACL {binding}")

    async def create_acls(self, bindings: Sequence[AclBinding]) -> None:
        if bindings:
            await asyncio.to_thread(self._create_acls, bindings)

    def _delete_acls(self, filters: Sequence[AclBindingFilter]) -> int:
        futures = self._client().delete_acls(list(filters), request_timeout=self.timeout)
        return sum(len(self._wait(f, "delete ACLs")) for f in futures.values())

    async def delete_acls(self, bindings: Sequence[AclBinding]) -> None:
        """Delete exactly these ACLs."""
        if bindings:
            filters = [self._filter(b.principal, b) for b in bindings]
            await asyncio.to_thread(self._delete_acls, filters)

    async def delete_acls_of(self, principals: Sequence[str]) -> int:
        """Delete every ACL of these principals; returns how many there were."""
        if not principals:
            return 0
        filters = [self._filter(p) for p in principals]
        return await asyncio.to_thread(self._delete_acls, filters)
