"""`labelops worker`: one campaign's worker.

It runs three things until SIGTERM: the HTTP API and labeling page (server.py), the ingest
consumer (items topic -> Postgres) and the outbox relay (Postgres -> labels topic). On
SIGTERM it reports not-ready, stops accepting connections, lets in-flight requests finish,
then stops ingest and the relay (the relay last, so labels accepted while draining are
published now rather than by the next worker) and closes the database pool.

Python runs one thread at a time per process, so with LABELOPS_WORKER_PROCESSES above 1 (by
default one per usable core, see config.py) the HTTP API is served by that many processes
sharing one listening socket, and this process supervises them and runs ingest and the
relay itself (prefork.py); the order on SIGTERM is the same. With 1, everything runs in
this process.

A background thread that dies ends the worker with a non-zero exit, so Kubernetes restarts
the pod instead of leaving a worker that accepts labels but never relays them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

from psycopg_pool import ConnectionPool

from labelops.worker import prefork
from labelops.worker.config import ConfigError, WorkerSettings, settings_from_env
from labelops.worker.readiness import ReadinessCheck
from labelops.worker.runtime import (
    BACKGROUND_CONNECTIONS,
    BACKGROUND_JOIN_SECONDS,
    EXIT_CONFIG,
    EXIT_FAILURE,
    HttpService,
    background_loops,
    configure_logging,
    describe,
    http_server,
    open_pool,
    shut_down_on_signals,
    shutdown_check,
    wait_for_shutdown,
)

log = logging.getLogger("labelops.worker")


def run(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    level = env.get("LABELOPS_LOG_LEVEL", "INFO")
    try:
        settings = settings_from_env(env)
    except ConfigError as err:
        configure_logging(level)
        log.error("cannot start: %s", err)
        return EXIT_CONFIG
    if settings.listen_fd is not None:
        configure_logging(level, "http")
        return serve_http_process(settings)
    if settings.processes > 1:
        configure_logging(level, "main")
        return prefork.supervise(settings, env)
    configure_logging(level)
    return serve(settings)


def serve(settings: WorkerSettings) -> int:
    """Everything in this process."""
    # HTTP threads plus the ingest writers, the relay and the quality job.
    pool = open_pool(settings, min_size=2, max_size=settings.threads + BACKGROUND_CONNECTIONS)
    if pool is None:
        return EXIT_FAILURE
    try:
        return _serve_with_pool(settings, pool)
    finally:
        pool.close()


def _serve_with_pool(settings: WorkerSettings, pool: ConnectionPool) -> int:
    shutdown = threading.Event()
    ingest, relay, quality = background_loops(settings, pool, shutdown.set)
    checks: dict[str, ReadinessCheck] = {
        "ingest": ingest.check_alive,
        "outboxRelay": relay.check_alive,
        "shutdown": shutdown_check(shutdown),
    }
    http = http_server(settings, pool, checks)
    shut_down_on_signals(shutdown)
    ingest.start()
    relay.start()
    quality.start()
    http.start()
    log.info("%s", describe(settings, http.server.port, "in one process", http.auth.labelers))
    wait_for_shutdown(shutdown, lambda: _stop_if_failed(http, shutdown))

    drained = http.drain()
    quality.join(BACKGROUND_JOIN_SECONDS)
    ingest.join(BACKGROUND_JOIN_SECONDS)
    relay.join(BACKGROUND_JOIN_SECONDS)
    failed = [task.name for task in (ingest, relay) if task.failed]
    if http.failed:
        failed.append("the HTTP server")
    if failed:
        log.error("stopped because %s failed", ", ".join(failed))
        return EXIT_FAILURE
    log.info("stopped%s", "" if drained else " (some requests were cut off)")
    return 0


def _stop_if_failed(http: HttpService, shutdown: threading.Event) -> None:
    if http.failed and not shutdown.is_set():
        log.error("the HTTP server stopped by itself: stopping the worker")
        shutdown.set()


def serve_http_process(settings: WorkerSettings) -> int:
    """One HTTP server process of a multi-process worker (started by prefork.supervise)."""
    assert settings.listen_fd is not None
    supervisor = settings.supervisor_pid or os.getppid()
    sock = socket.socket(fileno=settings.listen_fd)
    pool = open_pool(settings, min_size=1, max_size=settings.connections_per_process)
    if pool is None:
        sock.close()
        return EXIT_FAILURE
    try:
        shutdown = threading.Event()
        supervisor_alive = prefork.supervisor_check(supervisor)
        checks: dict[str, ReadinessCheck] = {
            # Both run in the supervisor, which stops every process when either fails.
            "ingest": supervisor_alive,
            "outboxRelay": supervisor_alive,
            "shutdown": shutdown_check(shutdown),
        }
        http = http_server(settings, pool, checks, sock)
        shut_down_on_signals(shutdown)
        http.start()

        def orphaned() -> None:
            # A supervisor killed outright cannot stop its HTTP processes: they go by
            # themselves rather than accept labels nobody relays.
            if os.getppid() != supervisor:
                log.error("the supervisor (pid %d) is gone: draining", supervisor)
                shutdown.set()
            _stop_if_failed(http, shutdown)

        wait_for_shutdown(shutdown, orphaned)
        drained = http.drain()
        if http.failed:
            log.error("stopped because the HTTP server failed")
            return EXIT_FAILURE
        log.info("stopped%s", "" if drained else " (some requests were cut off)")
        return 0
    finally:
        pool.close()
