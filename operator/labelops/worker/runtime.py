"""What every kind of worker process sets up the same way: the database pool, the ingest
and relay loops, readiness checks, signals, logging, and the HTTP server's lifetime."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType

from flask import Flask
from psycopg_pool import ConnectionPool, PoolTimeout

from labelops.store import LabelStore
from labelops.worker.auth import BearerAuth, TokenRefresh, auth_from_settings
from labelops.worker.background_loops import BackgroundTask
from labelops.worker.config import WorkerSettings
from labelops.worker.http.app import create_app
from labelops.worker.ingest import Ingestor
from labelops.worker.outbox import OutboxRelay
from labelops.worker.pipeline import Pipeline
from labelops.worker.quality_loop import QualityJob, QualityLoop
from labelops.worker.readiness import ReadinessCheck, database_check
from labelops.worker.server import GracefulServer
from labelops.worker.storeio import LoopStoreIO

log = logging.getLogger("labelops.worker")

DATABASE_WAIT_SECONDS = 30.0
# How long a request (or a loop) waits for a pooled connection: longer means the database is
# out, and the labeler gets 503 with Retry-After instead of a hang (ingest and the relay pause).
CONNECTION_WAIT_SECONDS = 5.0
# Kubernetes waits terminationGracePeriodSeconds (30 s by default) before SIGKILL.
HTTP_GRACE_SECONDS = 20.0
BACKGROUND_JOIN_SECONDS = 5.0
EXIT_CONFIG = 2
EXIT_FAILURE = 1


# Connections for the loops beside the HTTP server: one each for ingest, the outbox relay
# and the quality job (spec.quotas.postgres.connectionLimit is budgeted with it, see
# operator/plan.py). Ingest's second writer (ingest.WRITERS) borrows one when the relay and
# the quality job, which hold theirs for a moment every pass, are idle.
BACKGROUND_CONNECTIONS = 3


def open_pool(settings: WorkerSettings, min_size: int, max_size: int) -> ConnectionPool | None:
    """The campaign database's pool, opened; None (after logging why) when it is unreachable.

    The campaign role's CONNECTION LIMIT (quotas.postgres.connectionLimit) is shared by all
    replicas and the operator: callers size max_size from their threads."""
    config = settings.campaign
    pool: ConnectionPool = ConnectionPool(
        settings.postgres_dsn,
        min_size=min(min_size, max_size),
        max_size=max_size,
        timeout=CONNECTION_WAIT_SECONDS,
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


def background_loops(
    settings: WorkerSettings, pool: ConnectionPool, on_failure: Callable[[], None]
) -> tuple[BackgroundTask, BackgroundTask, BackgroundTask]:
    """The campaign's policy and labelsPerItem synced to the database, then the ingest
    consumer, the outbox relay and the quality job (not started)."""
    config = settings.campaign
    store = LabelStore(pool, config)
    policy = store.sync_policy()
    sync_labels_per_item(store)
    pipeline = Pipeline(pool, config, settings.kafka)
    ingest = BackgroundTask("ingest", Ingestor(pipeline).run, on_failure)
    relay = BackgroundTask("outbox-relay", OutboxRelay(pipeline).run, on_failure)
    scale = (config.task.scale.min, config.task.scale.max) if config.task.scale else None
    job = QualityJob(pool, config.schema_, policy, scale)
    quality = BackgroundTask("quality-job", QualityLoop(job).run, on_failure)
    return ingest, relay, quality


def shutdown_check(shutdown: threading.Event) -> ReadinessCheck:
    def not_shutting_down() -> None:
        if shutdown.is_set():
            raise RuntimeError("shutting down")

    return not_shutting_down


def app_for(
    settings: WorkerSettings,
    store: LabelStore,
    auth: BearerAuth,
    checks: dict[str, ReadinessCheck],
    io: LoopStoreIO,
) -> Flask:
    return create_app(
        store,
        settings.campaign,
        auth,
        checks,
        response_validation=settings.response_validation,
        run_blocking=io.blocking,
    )


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


def http_server(
    settings: WorkerSettings,
    pool: ConnectionPool,
    checks: dict[str, ReadinessCheck],
    sock: socket.socket | None = None,
) -> HttpService:
    """The HTTP server with its app, and the labelers' tokens as the database has them now
    (kept fresh by the service while it runs)."""
    io = LoopStoreIO(
        settings.postgres_dsn,
        settings.campaign,
        threads=settings.database_threads,
        batch_writers=settings.batch_writers,
    )
    store = LabelStore(pool, settings.campaign, io)
    checks.setdefault("database", database_check(pool))
    auth = auth_from_settings(settings)
    tokens = TokenRefresh(pool, settings.campaign.schema_, auth)
    tokens.refresh()
    server = GracefulServer(
        app_for(settings, store, auth, checks, io),
        settings.host,
        settings.port,
        sock,
        on_startup=io.start,
        on_shutdown=io.stop,
        grace_seconds=HTTP_GRACE_SECONDS,
    )
    return HttpService(server, auth, tokens)


class HttpService:
    """The GracefulServer in its own thread, and the refresh of its labelers' tokens."""

    def __init__(self, server: GracefulServer, auth: BearerAuth, tokens: TokenRefresh) -> None:
        self.server = server
        self.auth = auth
        self._thread = threading.Thread(target=server.serve, name="http", daemon=True)
        self._tokens = BackgroundTask("labeler-tokens", tokens.run, self._token_refresh_failed)
        self._tokens_failed = False

    def _token_refresh_failed(self) -> None:
        self._tokens_failed = True

    def start(self) -> None:
        self._thread.start()
        self._tokens.start()

    @property
    def failed(self) -> bool:
        """The server stopped by itself (it could not start, say), or the tokens can no
        longer be refreshed: the worker must go."""
        return self.server.failed or self._tokens_failed

    def drain(self) -> bool:
        """Stop accepting, let in-flight requests finish; True when all of them did."""
        drained = self.server.shutdown(HTTP_GRACE_SECONDS)
        self._thread.join(BACKGROUND_JOIN_SECONDS)
        self._tokens.join(BACKGROUND_JOIN_SECONDS)
        return drained


def configure_logging(level: str, process_label: str | None = None) -> None:
    """process_label tells the processes of a multi-process worker apart in the log."""
    where = f"[{process_label} %(process)d]" if process_label else ""
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper() if level.upper() in logging.getLevelNamesMapping() else "INFO",
        format=f"%(asctime)s %(levelname)s %(name)s{where}: %(message)s",
    )


def describe(settings: WorkerSettings, port: int, how: str, labelers: int | None = None) -> str:
    """labelers: how many the HTTP server knows now (None: its processes know)."""
    config = settings.campaign
    known = "" if labelers is None else f" with {labelers} labelers' tokens"
    return (
        f"worker of campaign {config.namespace}/{config.name} ({config.task.type.value}) "
        f"serving on http://{settings.host}:{port}{known}, {how}"
    )
