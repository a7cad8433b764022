"""The Flask (WSGI) app as an ASGI app, each request run on the event loop in a greenlet.

uvicorn (server.py) parses HTTP on an asyncio loop; this adapter turns each request into a
WSGI environ (PEP 3333) and calls the WSGI app through greenbridge.run_sync, so the app is
ordinary synchronous code and yet every wait inside it (a database call, see
labelops.store.labelstore's StoreIO) lets the loop serve the other requests meanwhile.

The body is read whole before the app runs, up to max_body_bytes (a longer one is a 413
problem without calling the app); the response is collected whole and sent in one piece:
the worker's responses are small JSON documents, the labeling page and its assets.
`on_startup` / `on_shutdown` run at the ASGI lifespan events, on the loop: the server's
async resources (the label batcher's pool) are opened and closed there.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from labelops.worker.greenbridge import run_sync
from labelops.worker.problem_details import Problem

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Hook = Callable[[], Awaitable[None]]


class _ClientGone(Exception):
    pass


class WsgiOnLoop:
    def __init__(
        self,
        app: WSGIApp,
        *,
        max_body_bytes: int,
        on_startup: Hook | None = None,
        on_shutdown: Hook | None = None,
    ) -> None:
        self._app = app
        self._max_body = max_body_bytes
        self._on_startup = on_startup
        self._on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websocket: not served; uvicorn answers the handshake with 403 when the app returns

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self._on_startup is not None:
                        await self._on_startup()
                except Exception as err:  # uvicorn logs the message and exits
                    log.exception("the HTTP server could not start")
                    await send({"type": "lifespan.startup.failed", "message": str(err)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    if self._on_shutdown is not None:
                        await self._on_shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self._read_body(receive)
        except _ClientGone:
            return  # the client left before sending its whole body: nothing to answer
        if body is None:
            too_large = Problem(
                413,
                "payload-too-large",
                f"the request body is larger than {self._max_body} bytes",
            )
            await _send_whole(send, *_collect(too_large.response(), _environ(scope, b"")))
            return
        environ = _environ(scope, body)
        status, headers, chunks = await run_sync(_collect, self._app, environ)
        await _send_whole(send, status, headers, chunks)

    async def _read_body(self, receive: Receive) -> bytes | None:
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)


def _environ(scope: Scope, body: bytes) -> dict[str, Any]:
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf-8").decode("latin-1"),
        # PEP 3333: the decoded path, as bytes read as latin-1 (so '%2F' arrives as '/').
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "RAW_URI": scope.get("raw_path", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "",
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
            continue
        if name == "CONTENT_LENGTH":
            continue  # the body was read whole: its real length is set above
        key = f"HTTP_{name}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _collect(
    app: WSGIApp, environ: dict[str, Any]
) -> tuple[int, list[tuple[bytes, bytes]], list[bytes]]:
    """Call the WSGI app and read its whole response (in the request's greenlet)."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return _no_write

    result = app(environ, start_response)
    try:
        chunks = [chunk for chunk in result if chunk]
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = started
    encoded = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    return int(status.split(" ", 1)[0]), encoded, chunks


def _no_write(data: bytes) -> None:
    raise RuntimeError("the write() callable of start_response is not supported")


async def _send_whole(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"".join(chunks)})
