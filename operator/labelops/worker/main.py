"""`labelops worker`: one campaign's worker.

This process, the supervisor, runs the ingest consumer (items topic -> Postgres) and the
outbox relay (Postgres -> labels topic), each in a thread of its own, and starts the HTTP
API and labeling page as a process of its own: gunicorn's master, which serves with
LABELOPS_WORKER_PROCESSES gevent processes (labelops.worker.server; by default one per
usable core, see config.py). The loops stay in real threads here, apart from the HTTP
processes: confluent-kafka's calls block in C and would hold up every greenlet of a gevent
process, and gunicorn forks its processes from a master that runs nothing else, so no
fork copies a thread of librdkafka's or psycopg's in the middle of its work.

On SIGTERM (or SIGINT) the supervisor passes SIGTERM to the HTTP server and waits until it
has drained (in-flight requests answered, new ones refused, readiness failing), then stops
ingest and, last, the relay, which so publishes the labels accepted while draining. A
background loop that dies, or an HTTP server that exits on its own (say, its processes
cannot reach the database), stops the whole worker with a non-zero exit, so Kubernetes
restarts the pod instead of leaving a worker that accepts labels but never relays them.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping

from labelops.store import LabelStore
from labelops.worker.config import (
    ENV_LISTEN_FD,
    ENV_SUPERVISOR_PID,
    ConfigError,
    WorkerSettings,
    configure_logging,
    settings_from_env,
)
from labelops.worker.metrics import MULTIPROCESS_DIR_ENV
from labelops.worker.runtime import (
    background_tasks,
    describe,
    open_pool,
    quality_loop,
    shut_down_on_signals,
    sync_labels_per_item,
    wait_for_shutdown,
)
from labelops.worker.server import GRACE_SECONDS, LISTEN_BACKLOG

log = logging.getLogger("labelops.worker")

EXIT_CONFIG = 2
EXIT_FAILURE = 1
BACKGROUND_JOIN_SECONDS = 5.0
# The HTTP server needs the grace period for its requests plus a little to close down.
HTTP_EXIT_SECONDS = GRACE_SECONDS + 10.0


def run(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    configure_logging(env, "main")
    try:
        settings = settings_from_env(env)
    except ConfigError as err:
        log.error("cannot start: %s", err)
        return EXIT_CONFIG
    return supervise(settings, env)


def supervise(settings: WorkerSettings, environ: Mapping[str, str]) -> int:
    # Ingest, the relay and the quality job hold one connection each; the HTTP processes
    # have their own.
    pool = open_pool(settings, min_size=1, max_size=3)
    if pool is None:
        return EXIT_FAILURE
    metrics_dir = tempfile.mkdtemp(prefix="labelops-worker-metrics-")
    try:
        shutdown = threading.Event()
        store = LabelStore(pool, settings.campaign)
        policy = store.sync_policy()
        sync_labels_per_item(store)
        ingest, relay = background_tasks(settings, pool, shutdown.set)
        quality = quality_loop(settings, pool, policy)
        shut_down_on_signals(shutdown)
        sock = listen_socket(settings.host, settings.port)
        port = sock.getsockname()[1]
        try:
            http = start_http_server(environ, sock, metrics_dir)
        finally:
            # The HTTP server holds its own copy: once it closed it on SIGTERM, new
            # connections are refused.
            sock.close()
        ingest.start()
        relay.start()
        quality.start()
        log.info(
            "%s",
            describe(
                settings,
                port,
                f"in {settings.processes} HTTP processes (gunicorn master pid {http.pid}, "
                f"gevent workers; {settings.connections_per_process + settings.batch_writers} "
                "database connections each)",
            ),
        )
        lost: list[str] = []

        def watch() -> None:
            if http.poll() is not None and not lost:
                lost.append(f"the HTTP server exited with {http.returncode}")
                log.error("%s: stopping the worker", lost[0])
                shutdown.set()

        wait_for_shutdown(shutdown, watch)
        clean = stop_http_server(http)
        quality.stop(BACKGROUND_JOIN_SECONDS)
        ingest.join(BACKGROUND_JOIN_SECONDS)
        relay.join(BACKGROUND_JOIN_SECONDS)
        failed = lost + [f"{task.name} failed" for task in (ingest, relay) if task.failed]
        if failed:
            log.error("stopped because %s", "; ".join(failed))
            return EXIT_FAILURE
        log.info("stopped%s", "" if clean else " (the HTTP server did not drain cleanly)")
        return 0
    finally:
        pool.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), for the HTTP server."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address, family=family, backlog=LISTEN_BACKLOG)


def start_http_server(
    environ: Mapping[str, str], sock: socket.socket, metrics_dir: str
) -> subprocess.Popen[bytes]:
    """The gunicorn master, a fresh interpreter: it imports neither psycopg nor
    confluent-kafka before its processes patch the standard library for gevent."""
    env = {
        **environ,
        ENV_LISTEN_FD: str(sock.fileno()),
        ENV_SUPERVISOR_PID: str(os.getpid()),
        # Every HTTP process keeps its metrics there; /metrics sums them (metrics.py).
        MULTIPROCESS_DIR_ENV: metrics_dir,
    }
    # stdout and stderr are inherited: the HTTP server logs into the worker's log. A
    # session of its own: a terminal's Ctrl-C reaches this process only, which then stops
    # the server gracefully.
    return subprocess.Popen(
        [sys.executable, "-m", "labelops.worker.server"],
        env=env,
        pass_fds=(sock.fileno(),),
        start_new_session=True,
    )


def stop_http_server(http: subprocess.Popen[bytes]) -> bool:
    """SIGTERM (gunicorn's graceful stop), then wait; True when it exited 0 in time (a
    straggler is killed)."""
    if http.poll() is None:
        http.send_signal(signal.SIGTERM)
    try:
        code = http.wait(HTTP_EXIT_SECONDS)
    except subprocess.TimeoutExpired:
        log.error("the HTTP server (pid %d) did not stop in time: killing it", http.pid)
        http.kill()
        code = http.wait()
    return code == 0
