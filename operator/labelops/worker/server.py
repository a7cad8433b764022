"""The production HTTP server (uvicorn on uvloop, httptools' parser) with a graceful stop.

The Flask app runs on uvicorn's event loop through labelops.worker.asgi: each request in a
greenlet of its own, waiting for the database without holding up the others (see
labelops.worker.storeio). One thread serves every connection, so a process spends its core
on requests rather than on handing them between threads.

Stopping (shutdown(), from any thread):
1. stop accepting: new requests on open connections get 503 (InFlight below), and uvicorn
   closes the listening socket (new connections are refused at once, so a load balancer
   moves on to another replica) and idle connections;
2. wait until every request that was already in flight has been answered (bounded by the
   grace period);
3. close every connection, run the ASGI shutdown (the batcher's pool closes) and end the
   loop. tests/integration/test_worker_process.py sends SIGTERM during requests and fails
   if an accepted label's answer is lost on the way.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from werkzeug.wsgi import ClosingIterator

from labelops.worker.asgi import Hook, WSGIApp, WsgiOnLoop
from labelops.worker.http.app import MAX_BODY_BYTES
from labelops.worker.problem_details import Problem

log = logging.getLogger(__name__)

# Connections wait here while the server (or a multi-process worker's servers) start.
LISTEN_BACKLOG = 1024
# A labeler's page or client keeps its connection between labels; a minute of silence
# frees it.
KEEP_ALIVE_SECONDS = 60
# A request line and headers beyond this are refused (431); they must arrive within
# HEAD_SECONDS (408). A labeler's request head is well under 2 KiB.
MAX_HEAD_BYTES = 64 * 1024
HEAD_SECONDS = 30.0
# After refusing a request head, input is read and dropped this long before closing.
LINGER_SECONDS = 2.0


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
        # The server closes the body after reading it: that is when the request is done.
        return ClosingIterator(body, [lambda: self._add(-1)])


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with two limits a server facing the network needs and
    uvicorn leaves to a proxy in front: a request head (request line and headers) larger
    than max_head_bytes is refused with 431, and one that has not arrived whole within
    head_seconds of its first byte (or of the connection, for a first request) with 408;
    either way the connection closes. Between requests uvicorn's keep-alive timeout
    applies."""

    max_head_bytes = MAX_HEAD_BYTES
    head_seconds = HEAD_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._in_head = True
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: read and drop
        super().data_received(data)
        # Counted only while the head is still incomplete after the parser took the data.
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(431, "Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_head_timer()
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.head_seconds, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "Request Timeout")

    def _refuse(self, status: int, reason: str) -> None:
        """Answer, then close the way a client can read the answer: closing a socket with
        unread input resets the connection, and the reset can destroy the answer before
        the client reads it. So: send, end our side, drop what still comes for a moment,
        then close."""
        self._disarm_head_timer()
        self._refused = True
        body = f"{status} {reason}\n".encode()
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), inheritable, so that the
    HTTP processes of a multi-process worker can share it (prefork.py)."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.create_server(address, family=family, backlog=LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


class GracefulServer:
    """Serves on host:port, or on `sock`, a listening socket shared with other processes
    (prefork.py); closing it on shutdown closes only this process's copy.

    on_startup / on_shutdown run on the server's loop before the first request and after
    the last one (LoopStoreIO.start / stop)."""

    def __init__(
        self,
        app: WSGIApp,
        host: str,
        port: int,
        sock: socket.socket | None = None,
        *,
        on_startup: Hook | None = None,
        on_shutdown: Hook | None = None,
        grace_seconds: float = 20.0,
    ) -> None:
        self._in_flight = InFlight(app)
        self._sock = sock if sock is not None else listen_socket(host, port)
        self._port = int(self._sock.getsockname()[1])
        asgi = WsgiOnLoop(
            self._in_flight,
            max_body_bytes=MAX_BODY_BYTES,
            on_startup=on_startup,
            on_shutdown=on_shutdown,
        )
        self._server = uvicorn.Server(
            uvicorn.Config(
                asgi,
                interface="asgi3",
                loop="uvloop",
                http=GuardedProtocol,
                ws="none",
                lifespan="on",
                log_config=None,
                log_level="warning",
                access_log=False,
                # Never trust X-Forwarded-* from clients: nothing here depends on them.
                proxy_headers=False,
                server_header=False,
                timeout_keep_alive=KEEP_ALIVE_SECONDS,
                timeout_graceful_shutdown=max(1, int(grace_seconds)),
            )
        )
        self._stopped = threading.Event()
        self.failed = False

    @property
    def port(self) -> int:
        return self._port

    def serve(self) -> None:
        """Run the event loop until shutdown() ends it (call from the thread that serves)."""
        try:
            self._server.run(sockets=[self._sock])
        except BaseException:  # SystemExit from a failed start-up, too
            self.failed = True
            log.exception("the HTTP server stopped")
        finally:
            self._stopped.set()

    def shutdown(self, grace_seconds: float) -> bool:
        """Drain and stop from any thread; True when every in-flight request completed."""
        deadline = time.monotonic() + grace_seconds
        self._in_flight.draining = True
        self._server.should_exit = True
        self._stopped.wait(timeout=max(1.0, deadline - time.monotonic()) + 5.0)
        if self._in_flight.count:
            log.warning("%d request(s) still running after the grace period", self._in_flight.count)
        return self._in_flight.count == 0 and self._stopped.is_set()
