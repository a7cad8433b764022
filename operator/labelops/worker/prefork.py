"""A worker with several HTTP server processes: this process supervises them.

The supervisor binds the listening socket and starts LABELOPS_WORKER_PROCESSES HTTP server
processes (`labelops worker` again, with the socket inherited as LABELOPS_WORKER_LISTEN_FD
and the same environment otherwise); the kernel hands each new connection to whichever of
them accepts first. It runs the ingest consumer and the outbox relay itself, so they run
once per replica, as with one process.

Started processes, not forked ones: a fork copies a process's threads' locks in whatever
state they are (psycopg, librdkafka, logging), while a fresh interpreter starts clean and
imports prometheus_client with PROMETHEUS_MULTIPROC_DIR already set (see metrics.py).

SIGTERM (or SIGINT) to the supervisor: it passes SIGTERM on, waits until every HTTP process
has drained and exited, then stops ingest and, last, the relay, which so publishes the
labels accepted while draining. An HTTP process that exits on its own, or a background loop
that fails, stops the whole worker with a non-zero exit; an HTTP process whose supervisor
vanished drains and exits (main.serve_http_process).
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
import time
from collections.abc import Mapping

from labelops.worker.config import ENV_LISTEN_FD, ENV_SUPERVISOR_PID, WorkerSettings
from labelops.worker.metrics import MULTIPROCESS_DIR_ENV
from labelops.worker.readiness import ReadinessCheck
from labelops.worker.runtime import (
    BACKGROUND_CONNECTIONS,
    BACKGROUND_JOIN_SECONDS,
    EXIT_FAILURE,
    HTTP_GRACE_SECONDS,
    background_loops,
    describe,
    open_pool,
    shut_down_on_signals,
    wait_for_shutdown,
)
from labelops.worker.server import listen_socket

log = logging.getLogger("labelops.worker")

# An HTTP process needs the grace period for its requests plus a little to close down.
CHILD_EXIT_SECONDS = HTTP_GRACE_SECONDS + BACKGROUND_JOIN_SECONDS + 5.0


def supervise(settings: WorkerSettings, environ: Mapping[str, str]) -> int:
    # Ingest's writers (ingest.WRITERS), the relay and the quality job hold one connection
    # each; the HTTP processes have their own.
    pool = open_pool(settings, min_size=1, max_size=BACKGROUND_CONNECTIONS)
    if pool is None:
        return EXIT_FAILURE
    # `labelops worker` made it before prometheus-client loaded (cli.py), so this process's
    # own metrics are shared with the HTTP processes; one of our own otherwise.
    inherited = os.environ.get(MULTIPROCESS_DIR_ENV)
    metrics_dir = inherited or tempfile.mkdtemp(prefix="labelops-worker-metrics-")
    try:
        shutdown = threading.Event()
        ingest, relay, quality = background_loops(settings, pool, shutdown.set)
        shut_down_on_signals(shutdown)
        sock = listen_socket(settings.host, settings.port)
        port = sock.getsockname()[1]
        try:
            children = [
                start_http_process(environ, sock, metrics_dir) for _ in range(settings.processes)
            ]
        finally:
            # The HTTP processes hold their own copies: once they all closed theirs on
            # SIGTERM, new connections are refused.
            sock.close()
        ingest.start()
        relay.start()
        quality.start()
        log.info(
            "%s",
            describe(
                settings,
                port,
                f"in {len(children)} HTTP processes (pids "
                f"{', '.join(str(c.pid) for c in children)}; "
                f"{settings.connections_per_process + settings.batch_writers} database "
                "connections each)",
            ),
        )
        lost: list[str] = []

        def watch() -> None:
            for child in children:
                if child.poll() is not None and not lost:
                    lost.append(f"HTTP process {child.pid} exited with {child.returncode}")
                    log.error("%s: stopping the worker", lost[0])
                    shutdown.set()

        wait_for_shutdown(shutdown, watch)
        clean = stop_http_processes(children)
        quality.join(BACKGROUND_JOIN_SECONDS)
        ingest.join(BACKGROUND_JOIN_SECONDS)
        relay.join(BACKGROUND_JOIN_SECONDS)
        failed = lost + [f"{task.name} failed" for task in (ingest, relay) if task.failed]
        if failed:
            log.error("stopped because %s", "; ".join(failed))
            return EXIT_FAILURE
        log.info("stopped%s", "" if clean else " (an HTTP process did not drain cleanly)")
        return 0
    finally:
        pool.close()
        if not inherited:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def start_http_process(
    environ: Mapping[str, str], sock: socket.socket, metrics_dir: str
) -> subprocess.Popen[bytes]:
    env = {
        **environ,
        ENV_LISTEN_FD: str(sock.fileno()),
        # Not the parent pid the HTTP process could read itself: by then this process may
        # already be gone (and the HTTP process reparented), which it must notice.
        ENV_SUPERVISOR_PID: str(os.getpid()),
        MULTIPROCESS_DIR_ENV: metrics_dir,
    }
    # stdout and stderr are inherited: the HTTP processes log into the worker's log.
    return subprocess.Popen(
        [sys.executable, "-m", "labelops.cli", "worker"],
        env=env,
        pass_fds=(sock.fileno(),),
    )


def stop_http_processes(children: list[subprocess.Popen[bytes]]) -> bool:
    """SIGTERM to every HTTP process still running, then wait for all; True when every one
    exited 0 in time (a straggler is killed)."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_EXIT_SECONDS
    clean = True
    for child in children:
        try:
            code = child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("HTTP process %d did not stop in time: killing it", child.pid)
            child.kill()
            code = child.wait()
        clean = clean and code == 0
    return clean


def supervisor_check(pid: int) -> ReadinessCheck:
    """Ready only while the supervisor, which runs ingest and the relay, is this process's
    parent (it stops every HTTP process when either loop fails)."""

    def supervisor_alive() -> None:
        if os.getppid() != pid:
            raise RuntimeError(f"the supervisor process {pid} is gone")

    return supervisor_alive
