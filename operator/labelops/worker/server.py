"""The production WSGI server (waitress) with a graceful stop.

waitress has no public "drain and stop" call, so this module keeps the few internals it
needs in one place (pinned waitress 3.0.x; tests/integration/test_worker_process.py sends
SIGTERM during requests and fails if this stops working):

1. stop accepting: answer new requests with 503 and close the listening socket (new
   connections are refused at once, so a load balancer moves on to another replica);
2. wait until every request that was already in flight has returned (bounded by a grace);
3. wait until their responses have left the output buffers, then close every connection,
   which ends waitress's event loop.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import waitress
from waitress import wasyncore
from werkzeug.wsgi import ClosingIterator

from labelops.worker.problems import Problem

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
POLL_SECONDS = 0.01


SHUTTING_DOWN = Problem(
    503,
    "shutting-down",
    "this worker is shutting down; retry, another replica will answer",
    headers={"Retry-After": "1"},
)


class InFlight:
    """WSGI middleware counting requests whose response is not finished yet.

    Once draining, it answers new requests with 503 itself: a request that slips in on a
    kept-alive connection after the last in-flight one finished must not start work (say,
    commit a label) whose response the closing connection could no longer carry.
    """

    def __init__(self, app: WSGIApp) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._count = 0
        self.draining = False

    @property
    def count(self) -> int:
        return self._count

    def _add(self, delta: int) -> None:
        with self._lock:
            self._count += delta

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.draining:
            return SHUTTING_DOWN.response()(environ, start_response)
        self._add(1)
        try:
            body = self._app(environ, start_response)
        except BaseException:
            self._add(-1)
            raise
        # waitress closes the body after writing it: that is when the request is done.
        return ClosingIterator(body, [lambda: self._add(-1)])


class GracefulServer:
    """Serves on host:port, or on `sock`, a listening socket shared with other processes
    (prefork.py); then closing it in _stop_accepting closes only this process's copy."""

    def __init__(
        self,
        app: WSGIApp,
        host: str,
        port: int,
        threads: int,
        sock: socket.socket | None = None,
    ) -> None:
        self._in_flight = InFlight(app)
        where: dict[str, Any] = {"sockets": [sock]} if sock else {"host": host, "port": port}
        self._server: Any = waitress.create_server(
            self._in_flight,
            **where,
            threads=threads,
            ident="labelops-worker",
            # Never trust X-Forwarded-* from clients: nothing here depends on them.
            clear_untrusted_proxy_headers=True,
        )
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def serve(self) -> None:
        """Run the event loop until shutdown() ends it (call from the thread that serves)."""
        try:
            self._server.run()
        finally:
            self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
            self._stopped.set()

    def shutdown(self, grace_seconds: float) -> bool:
        """Drain and stop from any thread; True when every in-flight request completed."""
        deadline = time.monotonic() + grace_seconds
        self._in_flight.draining = True
        self._in_loop(self._stop_accepting)
        drained = self._wait(lambda: self._in_flight.count == 0, deadline)
        flushed = self._wait(self._buffers_empty, deadline)
        if not drained:
            log.warning("%d request(s) still running after the grace period", self._in_flight.count)
        self._in_loop(self._close_everything)
        self._stopped.wait(timeout=max(1.0, deadline - time.monotonic()))
        return drained and flushed

    def _in_loop(self, thunk: Callable[[], None]) -> None:
        # Sockets belong to the event loop's thread: hand the work to it.
        self._server.trigger.pull_trigger(thunk)

    def _stop_accepting(self) -> None:
        self._server.accepting = False
        # dispatcher.close, not the server's own close(), which also closes the trigger the
        # final step still needs.
        wasyncore.dispatcher.close(self._server)

    def _buffers_empty(self) -> bool:
        try:
            channels = list(self._server.active_channels.values())
        except RuntimeError:  # the loop thread changed the dict meanwhile: look again
            return False
        return all(not channel.total_outbufs_len for channel in channels)

    def _close_everything(self) -> None:
        for channel in list(self._server.active_channels.values()):
            channel.close()
        self._server.trigger.close()

    @staticmethod
    def _wait(condition: Callable[[], bool], deadline: float) -> bool:
        while not condition():
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True
