"""`labelops worker`: one campaign's worker process.

It runs three things until SIGTERM: the HTTP API and labeling page (waitress), the ingest
consumer (items topic -> Postgres) and the outbox relay (Postgres -> labels topic). On
SIGTERM it reports not-ready, stops accepting connections, lets in-flight requests finish,
then stops ingest and the relay (the relay last, so labels accepted while draining are
published now rather than by the next worker) and closes the database pool.

A background thread that dies ends the process with a non-zero exit, so Kubernetes
restarts the pod instead of leaving a worker that accepts labels but never relays them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from types import FrameType

from confluent_kafka.admin import AdminClient
from psycopg_pool import ConnectionPool, PoolTimeout

from labelops.store import LabelStore
from labelops.worker.api import create_app
from labelops.worker.config import ConfigError, WorkerSettings, settings_from_env
from labelops.worker.health import ReadinessCheck, kafka_topics_check
from labelops.worker.ingest import Ingestor
from labelops.worker.outbox import OutboxRelay
from labelops.worker.server import GracefulServer

log = logging.getLogger("labelops.worker")

DATABASE_WAIT_SECONDS = 30.0
# Kubernetes waits terminationGracePeriodSeconds (30 s by default) before SIGKILL.
HTTP_GRACE_SECONDS = 20.0
BACKGROUND_JOIN_SECONDS = 5.0
EXIT_CONFIG = 2
EXIT_FAILURE = 1


class BackgroundTask:
    """A long-running loop (`run(stop)`) in its own thread; a crash requests shutdown."""

    def __init__(
        self,
        name: str,
        loop: Callable[[threading.Event], None],
        on_failure: Callable[[], None],
    ) -> None:
        self.name = name
        self.failed = False
        self.stop = threading.Event()
        self._loop = loop
        self._on_failure = on_failure
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self.stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("%s did not stop within %.0fs", self.name, timeout)

    def check_alive(self) -> None:
        if not self._thread.is_alive():
            raise RuntimeError(f"the {self.name} thread is not running")

    def _main(self) -> None:
        try:
            self._loop(self.stop)
        except Exception:
            log.exception("%s crashed", self.name)
            self._fail()
        else:
            if not self.stop.is_set():
                log.error("%s returned before shutdown was requested", self.name)
                self._fail()

    def _fail(self) -> None:
        self.failed = True
        self._on_failure()


def run(environ: Mapping[str, str] | None = None) -> int:
    _configure_logging((environ or os.environ).get("LABELOPS_LOG_LEVEL", "INFO"))
    try:
        settings = settings_from_env(os.environ if environ is None else environ)
    except ConfigError as err:
        log.error("cannot start: %s", err)
        return EXIT_CONFIG
    return serve(settings)


def serve(settings: WorkerSettings) -> int:
    config = settings.campaign
    pool = ConnectionPool(
        settings.postgres_dsn,
        # HTTP threads plus the ingest and relay loops; the campaign role's CONNECTION LIMIT
        # (quotas.postgres.connectionLimit) is shared by all replicas and the operator.
        min_size=2,
        max_size=settings.threads + 2,
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
        return EXIT_FAILURE
    try:
        return _serve_with_pool(settings, pool)
    finally:
        pool.close()


def _serve_with_pool(settings: WorkerSettings, pool: ConnectionPool) -> int:
    config = settings.campaign
    shutdown = threading.Event()
    store = LabelStore(pool, config)
    reopened = store.sync_labels_per_item()
    if reopened:
        log.info("target.labelsPerItem grew: %d completed items reopened", reopened)
    ingest = BackgroundTask(
        "ingest", Ingestor(pool, config, settings.kafka_bootstrap).run, shutdown.set
    )
    relay = BackgroundTask(
        "outbox-relay", OutboxRelay(pool, config, settings.kafka_bootstrap).run, shutdown.set
    )

    def not_shutting_down() -> None:
        if shutdown.is_set():
            raise RuntimeError("shutting down")

    admin = AdminClient(
        {"bootstrap.servers": settings.kafka_bootstrap, "client.id": f"{config.name}-readyz"}
    )
    checks: dict[str, ReadinessCheck] = {
        "database": store.ping,
        "kafka": kafka_topics_check(admin, [config.topics.items, config.topics.labels]),
        "ingest": ingest.check_alive,
        "outboxRelay": relay.check_alive,
        "shutdown": not_shutting_down,
    }
    app = create_app(
        store,
        config,
        settings.tokens,
        checks,
        response_validation=settings.response_validation,
    )
    server = GracefulServer(app, settings.host, settings.port, settings.threads)
    http = threading.Thread(target=server.serve, name="http", daemon=True)

    def request_shutdown(signum: int, frame: FrameType | None) -> None:
        log.info("%s received: draining", signal.Signals(signum).name)
        shutdown.set()

    signal.signal(signal.SIGTERM, request_shutdown)
    signal.signal(signal.SIGINT, request_shutdown)
    ingest.start()
    relay.start()
    http.start()
    log.info(
        "worker of campaign %s/%s (%s) serving on http://%s:%d with %d labelers",
        config.namespace,
        config.name,
        config.task.type.value,
        settings.host,
        server.port,
        len(settings.tokens),
    )
    # Signal handlers run in this thread: wait in short slices so they are never delayed.
    while not shutdown.wait(0.5):
        pass

    drained = server.shutdown(HTTP_GRACE_SECONDS)
    http.join(BACKGROUND_JOIN_SECONDS)
    ingest.join(BACKGROUND_JOIN_SECONDS)
    relay.join(BACKGROUND_JOIN_SECONDS)
    failed = [task.name for task in (ingest, relay) if task.failed]
    if failed:
        log.error("stopped because %s failed", ", ".join(failed))
        return EXIT_FAILURE
    log.info("stopped%s", "" if drained else " (some requests were cut off)")
    return 0


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper() if level.upper() in logging.getLevelNamesMapping() else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # waitress warns whenever requests wait for a thread, which is normal under load; the
    # latency histogram in /metrics is the place to watch that.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
