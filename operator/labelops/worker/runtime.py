"""What a worker's processes set up: the database pool, the ingest and relay loops and
the signals in the supervisor (main.py), the app and its readiness checks in each HTTP
process (http_app, loaded by labelops.worker.server after the gevent patch)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from confluent_kafka.admin import AdminClient
from psycopg_pool import ConnectionPool, PoolTimeout

from labelops.store import LabelStore
from labelops.store.batching import BatchedIO
from labelops.store.policy import CampaignPolicy
from labelops.worker.background import BackgroundTask
from labelops.worker.config import WorkerSettings
from labelops.worker.http.app import create_app
from labelops.worker.ingest import Ingestor
from labelops.worker.outbox import OutboxRelay
from labelops.worker.quality_loop import QualityJob, QualityLoop
from labelops.worker.readiness import ReadinessCheck, kafka_topics_check
from labelops.worker.server import Draining, LoadedApp

log = logging.getLogger("labelops.worker")

DATABASE_WAIT_SECONDS = 30.0


def open_pool(settings: WorkerSettings, min_size: int, max_size: int) -> ConnectionPool | None:
    """The campaign database's pool, opened; None (after logging why) when it is unreachable.

    The campaign role's CONNECTION LIMIT (quotas.postgres.connectionLimit) is shared by all
    replicas and the operator: callers size max_size from what they run at once."""
    config = settings.campaign
    pool: ConnectionPool = ConnectionPool(
        settings.postgres_dsn,
        min_size=min(min_size, max_size),
        max_size=max_size,
        open=False,
        name=f"labelops-worker-{config.name}",
        # Autocommit: the store's statements are transactions of their own, and ingest and
        # the relay open theirs explicitly; no statement waits for an implicit BEGIN/COMMIT.
        kwargs={"application_name": f"labelops-worker/{config.name}", "autocommit": True},
    )
    try:
        pool.open(wait=True, timeout=DATABASE_WAIT_SECONDS)
    except PoolTimeout:
        log.error(
            "cannot start: PostgreSQL (LABELOPS_POSTGRES_DSN) did not accept a connection "
            "within %.0fs",
            DATABASE_WAIT_SECONDS,
        )
        pool.close()
        return None
    return pool


def sync_labels_per_item(store: LabelStore) -> None:
    reopened = store.sync_labels_per_item()
    if reopened:
        log.info("target.labelsPerItem grew: %d completed items reopened", reopened)


def background_tasks(
    settings: WorkerSettings, pool: ConnectionPool, on_failure: Callable[[], None]
) -> tuple[BackgroundTask, BackgroundTask]:
    """The ingest consumer and the outbox relay (not started)."""
    config = settings.campaign
    ingest = BackgroundTask(
        "ingest", Ingestor(pool, config, settings.kafka_bootstrap).run, on_failure
    )
    relay = BackgroundTask(
        "outbox-relay", OutboxRelay(pool, config, settings.kafka_bootstrap).run, on_failure
    )
    return ingest, relay


def quality_loop(
    settings: WorkerSettings, pool: ConnectionPool, policy: CampaignPolicy
) -> QualityLoop:
    """The quality job's thread (not started): calibration, blocks, agreement, summaries."""
    task = settings.campaign.task
    scale = (task.scale.min, task.scale.max) if task.scale else None
    return QualityLoop(QualityJob(pool, settings.campaign.schema_, policy, scale))


def kafka_check(settings: WorkerSettings) -> ReadinessCheck:
    config = settings.campaign
    admin = AdminClient(
        {"bootstrap.servers": settings.kafka_bootstrap, "client.id": f"{config.name}-readyz"}
    )
    return kafka_topics_check(admin, [config.topics.items, config.topics.labels])


def shut_down_on_signals(shutdown: threading.Event) -> None:
    def request_shutdown(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: draining", signal.Signals(signum).name)
        shutdown.set()

    signal.signal(signal.SIGTERM, request_shutdown)
    signal.signal(signal.SIGINT, request_shutdown)


def wait_for_shutdown(shutdown: threading.Event, watch: Callable[[], None] | None = None) -> None:
    """Block until shutdown is set; watch() runs twice a second meanwhile.

    Signal handlers run in this (the main) thread: waiting in short slices means they are
    never delayed."""
    while not shutdown.wait(0.5):
        if watch is not None:
            watch()


def http_app(settings: WorkerSettings, draining: Draining) -> LoadedApp:
    """The app of one HTTP process, with its store: validated labels and claims go to the
    process's group-commit batchers, everything else waits for the database in the
    request's own greenlet. Raises when the database is unreachable (gunicorn then stops
    the server: the worker exits non-zero)."""
    _refuse_blocking_psycopg()
    pool = open_pool(settings, min_size=1, max_size=settings.connections_per_process)
    if pool is None:
        raise RuntimeError("PostgreSQL is unreachable")
    io = BatchedIO(settings.postgres_dsn, settings.campaign, writers=settings.batch_writers)
    io.open()
    store = LabelStore(pool, settings.campaign, io)
    supervisor_alive = supervisor_check(settings.supervisor_pid or os.getppid())
    checks: dict[str, ReadinessCheck] = {
        "database": store.ping,
        "kafka": in_os_thread(kafka_check(settings)),
        # Both run in the supervisor, which stops the HTTP server when either fails.
        "ingest": supervisor_alive,
        "outboxRelay": supervisor_alive,
        "shutdown": draining.check,
    }
    app = create_app(
        store,
        settings.campaign,
        settings.tokens,
        checks,
        response_validation=settings.response_validation,
    )

    def close() -> None:
        io.close()
        pool.close()

    return LoadedApp(app, close)


def in_os_thread(check: ReadinessCheck) -> ReadinessCheck:
    """check() on a thread of gevent's pool: confluent-kafka's calls block in C, where they
    would hold up every greenlet of the process; there only the probe waits."""
    import gevent

    def off_the_hub() -> None:
        gevent.get_hub().threadpool.apply(check)

    return off_the_hub


def supervisor_check(pid: int) -> ReadinessCheck:
    """Ready only while the supervisor, which runs ingest and the relay, is running (it
    stops the HTTP server when either loop fails; the server stops when it dies)."""

    def supervisor_alive() -> None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise RuntimeError(f"the supervisor process {pid} is gone") from None

    return supervisor_alive


def _refuse_blocking_psycopg() -> None:
    """psycopg picks its wait function when imported: one imported before gevent patched
    select blocks the whole process on every query."""
    from gevent import monkey
    from psycopg import waiting

    if monkey.is_module_patched("select") and waiting.wait is getattr(waiting, "wait_c", None):
        raise RuntimeError(
            "psycopg was imported before gevent patched the standard library: its waits "
            "would block every request of the process"
        )


def describe(settings: WorkerSettings, port: int, how: str) -> str:
    config = settings.campaign
    return (
        f"worker of campaign {config.namespace}/{config.name} ({config.task.type.value}) "
        f"serving on http://{settings.host}:{port} with {len(settings.tokens)} labelers, {how}"
    )
