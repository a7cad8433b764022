"""A campaign on the real stack, and a worker serving it over real HTTP, for worker tests.

Each `Campaign` gets its own Postgres schema (migrated) and its own Kafka topics, so tests
never see each other's items. `LiveApi` serves the Flask app with the production WSGI server
on a free loopback port; `WorkerProcess` runs `labelops worker` itself, configured only by
the environment, as a pod would run it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql
from psycopg_pool import ConnectionPool

from devstack.kafka import client_connection
from devstack.procs import TimedOut, free_port, poll_until
from labelops.api.worker_configmap import (
    ENV_CAMPAIGN,
    ENV_KAFKA_BOOTSTRAP,
    ENV_POSTGRES_DSN,
    ENV_TOKEN_PREFIX,
    WorkerConfig,
)
from labelops.store import LabelStore
from labelops.store.items import ItemRecord, write_ingest_batch
from labelops.store.migrations import migrate
from labelops.store.queries import Queries
from labelops.worker.auth import BearerAuth
from labelops.worker.config import ENV_HOST, ENV_PORT, ENV_RESPONSE_VALIDATION, ResponseValidation
from labelops.worker.http.app import create_app
from labelops.worker.readiness import ReadinessCheck
from labelops.worker.server import GracefulServer
from labelops.worker.storeio import LoopStoreIO

QUIET_KAFKA = {"log_level": 0}
TOKENS = {"alice": "tok-alice-5f1c0e", "bob": "tok-bob-93ad27", "carol": "tok-carol-1b7e44"}


def pairwise_payload(n: int) -> dict[str, Any]:
    return {
        "prompt": f"Prompt {n}: explain why the sky is blue.",
        "responses": [
            {"id": f"m1-{n}", "text": f"Rayleigh scattering ({n})."},
            {"id": f"m2-{n}", "text": f"Because it reflects the ocean ({n})."},
        ],
    }


@dataclass
class Campaign:
    """A campaign's schema and topics on the stack, with its WorkerConfig."""

    config: WorkerConfig
    dsn: str
    bootstrap: str
    pool: ConnectionPool[Any] = field(repr=False)

    @property
    def store(self) -> LabelStore:
        return LabelStore(self.pool, self.config)

    def seed(self, items: Sequence[tuple[str, dict[str, Any]] | ItemRecord]) -> None:
        """Write items the way ingest does, without waiting for Kafka."""
        records = [i if isinstance(i, ItemRecord) else ItemRecord(i[0], i[1]) for i in items]
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            write_ingest_batch(cur, Queries(self.config.schema_), records, [])

    def produce_items(self, messages: Sequence[dict[str, Any]]) -> None:
        producer = Producer(client_connection(self.bootstrap).client_config(QUIET_KAFKA))
        for message in messages:
            producer.produce(
                self.config.topics.items, key=message["id"].encode(), value=json.dumps(message)
            )
        assert producer.flush(30) == 0, "items were not delivered to Kafka"

    def count(self, table: str) -> int:
        with self.pool.connection() as conn:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(
                    sql.Identifier(self.config.schema_, table)
                )
            ).fetchone()
        assert row is not None
        return int(row[0])

    def relayed_labels(self, expected: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Messages on the labels topic, once at least `expected` arrived (or the timeout)."""
        consumer = Consumer(
            client_connection(self.bootstrap).client_config(
                {
                    "group.id": f"test-{uuid.uuid4().hex}",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                    **QUIET_KAFKA,
                }
            )
        )
        consumer.subscribe([self.config.topics.labels])
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        try:
            while len(found) < expected and time.monotonic() < deadline:
                for message in consumer.consume(500, 0.5):
                    if message.error() is None:
                        found.append(json.loads(message.value() or b"null"))
        finally:
            consumer.close()
        return found

    def worker_env(self, tokens: Mapping[str, str] = TOKENS) -> dict[str, str]:
        env = {
            ENV_CAMPAIGN: self.config.model_dump_json(by_alias=True),
            ENV_POSTGRES_DSN: self.dsn,
            ENV_KAFKA_BOOTSTRAP: self.bootstrap,
            **client_connection(self.bootstrap).security_env(),
        }
        env.update({f"{ENV_TOKEN_PREFIX}{labeler}": token for labeler, token in tokens.items()})
        return env


def campaign_config(
    name: str,
    task: Mapping[str, Any],
    *,
    labels_per_item: int = 1,
    items: int = 10,
    quotas: Mapping[str, Any] | None = None,
) -> WorkerConfig:
    prefix = f"labelops.test.{name}"
    return WorkerConfig.model_validate(
        {
            "namespace": "test",
            "name": name,
            "task": {"instructions": "Pick the better response.", **task},
            "target": {"items": items, "labelsPerItem": labels_per_item},
            "quotas": {"perLabelerDaily": 1000, "maxLeasesPerLabeler": 5, **(quotas or {})},
            "schema": f"lc_test_{name.replace('-', '_')}",
            "topics": {"items": f"{prefix}.items", "labels": f"{prefix}.labels"},
            "consumerGroup": f"{prefix}.worker",
        }
    )


@contextmanager
def provisioned(
    dsn: str, bootstrap: str, config: WorkerConfig, pool_size: int = 8
) -> Iterator[Campaign]:
    """The schema (migrated) and topics of config, removed again afterwards."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, config.schema_)
    admin = AdminClient(client_connection(bootstrap).client_config(QUIET_KAFKA))
    topics = [config.topics.items, config.topics.labels]
    for future in admin.create_topics(
        [NewTopic(t, num_partitions=3, replication_factor=1) for t in topics]
    ).values():
        future.result(30)
    pool: ConnectionPool[Any] = ConnectionPool(dsn, min_size=1, max_size=pool_size, open=True)
    try:
        yield Campaign(config, dsn, bootstrap, pool)
    finally:
        pool.close()
        for future in admin.delete_topics(topics).values():
            future.result(30)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(config.schema_)))


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class LiveApi:
    """create_app() behind the production server on a free loopback port, in this process,
    with the store waiting the way the worker's does (LoopStoreIO: the batcher, a thread
    pool)."""

    def __init__(
        self,
        campaign: Campaign,
        tokens: Mapping[str, str] = TOKENS,
        readiness_checks: Mapping[str, ReadinessCheck] | None = None,
        threads: int = 8,
    ) -> None:
        io = LoopStoreIO(campaign.dsn, campaign.config, threads=threads, batch_writers=2)
        store = LabelStore(campaign.pool, campaign.config, io)
        checks = readiness_checks if readiness_checks is not None else {"database": store.ping}
        self.app = create_app(
            store,
            campaign.config,
            BearerAuth(tokens),
            checks,
            response_validation=ResponseValidation.STRICT,
            run_blocking=io.blocking,
        )
        self.tokens = tokens
        self.server = GracefulServer(
            self.app, "127.0.0.1", 0, on_startup=io.start, on_shutdown=io.stop
        )
        self.url = f"http://127.0.0.1:{self.server.port}"
        self._thread = threading.Thread(target=self.server.serve, name="test-http", daemon=True)
        self._thread.start()

    def session(self, labeler: str | None) -> requests.Session:
        session = requests.Session()
        if labeler is not None:
            session.headers["Authorization"] = f"Bearer {self.tokens[labeler]}"
        return session

    def stop(self) -> None:
        self.server.shutdown(grace_seconds=5)
        self._thread.join(10)


@contextmanager
def live_api(campaign: Campaign, **kwargs: Any) -> Iterator[LiveApi]:
    api = LiveApi(campaign, **kwargs)
    try:
        yield api
    finally:
        api.stop()


class WorkerProcess:
    """`labelops worker` as a child process, configured only through its environment."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {
            **os.environ,
            **env,
            ENV_PORT: str(self.port),
            ENV_HOST: "127.0.0.1",
            ENV_RESPONSE_VALIDATION: "strict",
        }
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labelops.cli", "worker"],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> None:
        wait_for(lambda: self._ready(), timeout, lambda: f"worker not ready:\n{self.log()}")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log()}")
        try:
            return requests.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            return False  # not listening yet, or its HTTP processes are still starting

    def terminate(self, timeout: float = 40.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


def wait_for(
    condition: Callable[[], bool], timeout: float, describe: Callable[[], str] = lambda: ""
) -> None:
    try:
        poll_until(condition, timeout)
    except TimedOut:
        raise AssertionError(f"timed out after {timeout:.0f}s. {describe()}") from None
