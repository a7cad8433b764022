"""The worker's HTTP server: gunicorn, with gevent worker processes, configured here.

`labelops worker` (main.py) binds the port and starts this module as a process of its own,
the gunicorn master (`python -m labelops.worker.server`, the socket inherited as
LABELOPS_WORKER_LISTEN_FD). The master forks LABELOPS_WORKER_PROCESSES HTTP processes,
which share the socket, restarts one that dies, and stops them gracefully on SIGTERM. Each
HTTP process monkey-patches the standard library for gevent first and only then loads the
app (load_app below): every request runs in a greenlet of its own, and every wait inside
it (psycopg 3 waits the gevent way once select is patched, the group-commit batchers wait
on gevent events) lets the process serve the others meanwhile. So nothing the app imports
may be imported by this module at import time: a psycopg imported before the patch would
keep its blocking wait function (checked in LoadedApp.__init__).

What gunicorn does by configuration (gunicorn_options), and what a client sees:
  - a request line longer than REQUEST_LINE_LIMIT: 414 URI Too Long;
  - more than HEADER_FIELDS_LIMIT header fields, one longer than HEADER_FIELD_LIMIT, or
    header fields adding up to more than 64 KiB: 431 Request Header Fields Too Large;
  - a request head not arrived whole within KEEP_ALIVE_SECONDS of the connection (or of
    the previous response on a kept-alive connection): the connection is closed without an
    answer (gunicorn sends no 408); the same bound closes idle kept-alive connections;
  - a body over the app's limit: the app's own 413 problem (Flask's MAX_CONTENT_LENGTH).
Stopping, on SIGTERM to the master: it closes its listening socket and passes SIGTERM on;
each HTTP process stops accepting, answers the requests it already read (new requests on
kept-alive connections get 503 from RefuseWhileDraining, and readiness fails), and exits
once its connections are done, or after GRACE_SECONDS. The master exits 0 when all did.

A master whose parent (the supervisor, which runs ingest and the outbox relay) dies gets
SIGTERM from the kernel (PR_SET_PDEATHSIG) and so drains too: HTTP processes never accept
labels that nobody relays.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gunicorn.app.base import BaseApplication

from labelops.worker.problem_details import Problem

log = logging.getLogger("labelops.worker")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Connections wait here while the HTTP processes start or are busy.
LISTEN_BACKLOG = 1024
# Connections (each a greenlet) one HTTP process serves at once.
CONNECTIONS_PER_PROCESS = 1000
# gunicorn's gevent worker bounds by this one setting the wait for a request head (first
# byte to the end of its headers) and the wait between requests on a kept-alive
# connection; a drain waits this long at most for idle kept-alive connections to close.
KEEP_ALIVE_SECONDS = 10
# Kubernetes waits terminationGracePeriodSeconds (30 s by default) before SIGKILL.
GRACE_SECONDS = 20
# A labeler's request head is well under 2 KiB. gunicorn caps the request line at 8190
# bytes, and the header fields at HEADER_FIELDS_LIMIT x (HEADER_FIELD_LIMIT + 2) bytes:
# 64 KiB here.
REQUEST_LINE_LIMIT = 8190
HEADER_FIELDS_LIMIT = 32
HEADER_FIELD_LIMIT = 2046
# An HTTP process whose main greenlet has not reported for this long is killed and
# replaced by the master (only a CPU-bound or C call that never yields could do that).
STUCK_PROCESS_SECONDS = 30

SHUTTING_DOWN = Problem(
    503,
    "shutting-down",
    "this worker is shutting down; retry, another replica will answer",
    headers={"Retry-After": "1"},
)

PR_SET_PDEATHSIG = 1


def gunicorn_options(
    *, listen_fd: int, processes: int, log_level: str = "info", **overrides: Any
) -> dict[str, Any]:
    """The server's gunicorn settings (overrides: any other gunicorn setting, for tests)."""
    options: dict[str, Any] = {
        "bind": [f"fd://{listen_fd}"],
        "backlog": LISTEN_BACKLOG,
        "workers": processes,
        "worker_class": "gevent",
        "worker_connections": CONNECTIONS_PER_PROCESS,
        "keepalive": KEEP_ALIVE_SECONDS,
        "graceful_timeout": GRACE_SECONDS,
        "timeout": STUCK_PROCESS_SECONDS,
        "limit_request_line": REQUEST_LINE_LIMIT,
        "limit_request_fields": HEADER_FIELDS_LIMIT,
        "limit_request_field_size": HEADER_FIELD_LIMIT,
        # Nothing here depends on X-Forwarded-* or the PROXY protocol: trust no peer's.
        "forwarded_allow_ips": "",
        "proxy_protocol": "off",
        # No control socket: nothing manages the server but its supervisor's signals.
        "control_socket_disable": True,
        "proc_name": "labelops-worker-http",
        "loglevel": log_level.lower(),
        "errorlog": "-",
        "accesslog": None,
    }
    options.update(overrides)
    return options


class Draining:
    """Whether this HTTP process is stopping: set once gunicorn has a worker to watch
    (post_worker_init), true once that worker is no longer alive (SIGTERM)."""

    def __init__(self) -> None:
        self._worker: Any = None

    def watch(self, worker: Any) -> None:
        self._worker = worker

    @property
    def active(self) -> bool:
        return self._worker is not None and not self._worker.alive

    def check(self) -> None:
        """A readiness check: fails while draining."""
        if self.active:
            raise RuntimeError("shutting down")


class RefuseWhileDraining:
    """WSGI middleware: once draining, new requests get 503 without reaching the app, so a
    request arriving on a kept-alive connection during the drain starts no work (say,
    commits no label) and the client retries with another replica."""

    def __init__(self, app: WSGIApp, draining: Draining) -> None:
        self._app = app
        self._draining = draining

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self._draining.active:
            return SHUTTING_DOWN.response()(environ, start_response)
        return self._app(environ, start_response)


@dataclass(frozen=True)
class LoadedApp:
    """What an HTTP process serves, and what to close when it exits."""

    wsgi: WSGIApp
    close: Callable[[], None] = lambda: None


class GunicornServer(BaseApplication):
    """gunicorn run programmatically: `options` are its settings, and load_app(draining)
    builds the app in each HTTP process, after the gevent patch."""

    def __init__(self, options: Mapping[str, Any], load_app: Callable[[Draining], LoadedApp]):
        self._options = dict(options)
        self._load_app = load_app
        self._draining = Draining()
        self._loaded: LoadedApp | None = None
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._options.items():
            self.cfg.set(name, value)
        self.cfg.set("post_worker_init", self._post_worker_init)
        self.cfg.set("worker_exit", self._worker_exit)

    def load(self) -> WSGIApp:
        self._loaded = self._load_app(self._draining)
        return RefuseWhileDraining(self._loaded.wsgi, self._draining)

    def _post_worker_init(self, worker: Any) -> None:
        self._draining.watch(worker)

    def _worker_exit(self, server: Any, worker: Any) -> None:
        if self._loaded is not None:
            self._loaded.close()


def stop_with_parent() -> None:
    """SIGTERM (a graceful stop) for this process when its parent dies (Linux)."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError):
        log.warning("cannot ask to be stopped with the supervisor (not Linux?)")
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main() -> int:
    """The gunicorn master of a worker (started by labelops.worker.main)."""
    from labelops.worker.config import ConfigError, configure_logging, log_level, settings_from_env

    configure_logging(os.environ, "http")
    try:
        settings = settings_from_env(os.environ)
    except ConfigError as err:
        log.error("cannot start: %s", err)
        return 2
    if settings.listen_fd is None:
        log.error("cannot start: no listening socket (started by `labelops worker` only)")
        return 2
    supervisor = os.getppid()
    stop_with_parent()

    def load_app(draining: Draining) -> LoadedApp:
        # Imported here, in the HTTP process, after gevent patched the standard library.
        from labelops.worker.runtime import http_app

        return http_app(settings, draining)

    def on_exit(server: Any) -> None:
        if os.getppid() != supervisor:
            log.error("the supervisor (pid %d) is gone: the HTTP server drained", supervisor)

    options = gunicorn_options(
        listen_fd=settings.listen_fd,
        processes=settings.processes,
        log_level=log_level(os.environ),
        on_exit=on_exit,
    )
    GunicornServer(options, load_app).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
