"""The pieces that run the synchronous Flask app on an event loop: greenbridge and the ASGI
adapter (labelops.worker.asgi), with plain WSGI apps and asyncio, no server."""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from labelops.worker.asgi import WsgiOnLoop
from labelops.worker.greenbridge import in_bridge, run_each, run_sync, wait_for

REQUEST_ID: contextvars.ContextVar[int] = contextvars.ContextVar("request_id")


def test_sync_code_waits_for_awaitables_while_other_calls_run() -> None:
    order: list[str] = []

    def handler(name: str, delay: float) -> str:
        assert in_bridge()
        order.append(f"{name} start")
        slept = wait_for(asyncio.sleep(delay, result=delay))
        order.append(f"{name} end")
        return f"{name} slept {slept}"

    async def main() -> list[str]:
        return list(
            await asyncio.gather(run_sync(handler, "slow", 0.05), run_sync(handler, "fast", 0))
        )

    assert asyncio.run(main()) == ["slow slept 0.05", "fast slept 0"]
    # Both started before either ended: the slow one's wait did not hold up the loop.
    assert order == ["slow start", "fast start", "fast end", "slow end"]


def test_exceptions_reach_the_sync_code_and_come_back_out() -> None:
    async def fails() -> None:
        raise KeyError("from the loop")

    def handler() -> str:
        try:
            wait_for(fails())
        except KeyError as err:
            raise ValueError(f"handled {err}") from err
        return "unreachable"

    with pytest.raises(ValueError, match="handled 'from the loop'"):
        asyncio.run(run_sync(handler))


def test_each_call_has_its_own_context() -> None:
    def handler(n: int) -> int:
        REQUEST_ID.set(n)
        wait_for(asyncio.sleep(0))
        return REQUEST_ID.get()

    async def main() -> list[int]:
        return await asyncio.gather(*(run_sync(handler, n) for n in range(20)))

    assert asyncio.run(main()) == list(range(20))


def test_run_each_runs_its_work_at_once_and_answers_in_order() -> None:
    queued: list[int] = []
    seen_together: list[list[int]] = []

    async def batched(n: int) -> int:
        # What the store's group commit sees: everything queued before the loop moved on.
        queued.append(n)
        await asyncio.sleep(0)
        if queued:
            seen_together.append(sorted(queued))
            queued.clear()
        return n * 10

    def one(n: int, delay: float) -> Callable[[], int]:
        def work() -> int:
            assert in_bridge()
            value = wait_for(batched(n))
            wait_for(asyncio.sleep(delay))
            return value + n

        return work

    def handler() -> list[int]:
        # The slowest first: the answers keep the order of the work, not of finishing.
        return run_each([one(n, 0.03 - 0.01 * n) for n in range(3)])

    assert asyncio.run(run_sync(handler)) == [0, 11, 22]
    assert seen_together == [[0, 1, 2]]
    # Outside run_sync: one after the other, the same answers.
    assert run_each([lambda: 1, lambda: 2]) == [1, 2]


def test_wait_for_outside_run_sync_is_refused() -> None:
    assert not in_bridge()
    awaitable = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="outside run_sync"):
        wait_for(awaitable)
    awaitable.close()


def echo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    seen = {
        key: environ[key]
        for key in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "CONTENT_LENGTH")
    }
    seen["HTTP_X_TAG"] = environ.get("HTTP_X_TAG")
    seen["CONTENT_TYPE"] = environ.get("CONTENT_TYPE")
    seen["body"] = body.decode()
    start_response("201 Created", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


def call(
    app: WsgiOnLoop,
    path: str,
    body_parts: list[bytes],
    headers: list[tuple[bytes, bytes]],
    messages: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """What the app sends for a POST of body_parts (or of the given ASGI messages)."""
    sent: list[dict[str, Any]] = []
    if messages is None:
        messages = [
            {"type": "http.request", "body": part, "more_body": n < len(body_parts) - 1}
            for n, part in enumerate(body_parts)
        ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"next=true",
        "headers": headers,
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
    }
    asyncio.run(app(scope, receive, send))
    return sent


def test_requests_become_wsgi_environs_and_responses_come_back_whole() -> None:
    app = WsgiOnLoop(echo_app, max_body_bytes=100)
    sent = call(
        app,
        "/v1/tasks/a/b c/labels",
        [b'{"value"', b": 1}"],
        [
            (b"content-type", b"application/json"),
            (b"content-length", b"999"),  # the length read is what the app is told
            (b"x-tag", b"one"),
            (b"x-tag", b"two"),
        ],
    )
    start, body = sent
    assert start["status"] == 201
    assert (b"content-type", b"application/json") in start["headers"]
    assert json.loads(body["body"]) == {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/v1/tasks/a/b c/labels",
        "QUERY_STRING": "next=true",
        "CONTENT_LENGTH": "12",
        "HTTP_X_TAG": "one,two",
        "CONTENT_TYPE": "application/json",
        "body": '{"value": 1}',
    }


def test_non_ascii_paths_arrive_as_pep_3333_strings() -> None:
    sent = call(WsgiOnLoop(echo_app, max_body_bytes=100), "/v1/tasks/é/labels", [b""], [])
    path = json.loads(sent[1]["body"])["PATH_INFO"]
    assert path.encode("latin-1").decode("utf-8") == "/v1/tasks/é/labels"


def test_a_body_over_the_limit_is_413_without_calling_the_app() -> None:
    called: list[bool] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        called.append(True)
        return echo_app(environ, start_response)

    sent = call(WsgiOnLoop(app, max_body_bytes=10), "/x", [b"0123456", b"789ab"], [])
    assert sent[0]["status"] == 413
    problem = json.loads(sent[1]["body"])
    assert problem["status"] == 413 and "larger than 10 bytes" in problem["detail"]
    assert not called


def test_a_client_gone_before_its_body_ends_gets_nothing_and_runs_nothing() -> None:
    called: list[bool] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        called.append(True)
        return echo_app(environ, start_response)

    # The last part says more is coming, then the client disconnects.
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent = call(WsgiOnLoop(app, max_body_bytes=10), "/", [], [], messages)
    assert not sent and not called


def test_lifespan_runs_the_hooks_and_reports_a_failed_start() -> None:
    events: list[str] = []

    async def start() -> None:
        events.append("start")

    async def stop() -> None:
        events.append("stop")

    async def broken() -> None:
        raise ConnectionError("database unreachable")

    def run(app: WsgiOnLoop, incoming: list[str]) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        queue = [{"type": t} for t in incoming]

        async def receive() -> dict[str, Any]:
            return queue.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(app({"type": "lifespan"}, receive, send))
        return sent

    ok = WsgiOnLoop(echo_app, max_body_bytes=1, on_startup=start, on_shutdown=stop)
    assert [m["type"] for m in run(ok, ["lifespan.startup", "lifespan.shutdown"])] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert events == ["start", "stop"]
    failed = run(WsgiOnLoop(echo_app, max_body_bytes=1, on_startup=broken), ["lifespan.startup"])
    assert failed == [{"type": "lifespan.startup.failed", "message": "database unreachable"}]
