"""The progress loop: reads only campaigns whose schema is ready and that are not being
deleted, never one campaign twice at once, and a failing read stops nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, cast

import pytest

from labelops.operator import progress_loop
from labelops.operator.progress_loop import ProgressLoop
from labelops.operator.status_writer import StatusWriter

READY = {"type": "SchemaReady", "status": "True"}


def campaign(name: str, *, ready: bool = True, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": "ns", "name": name, "resourceVersion": "1"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {},
        "status": {"conditions": [READY] if ready else []},
    }


def loop_over(*bodies: dict[str, Any]) -> ProgressLoop:
    writer = StatusWriter(None, lambda *_: None)  # type: ignore[arg-type]  # no request here
    for body in bodies:
        writer.seen_campaign(body)
    ctx = SimpleNamespace(status=writer, schedules=dict, handler_context=contextvars.copy_context())
    return ProgressLoop(cast(Any, ctx))


def test_a_tick_reads_the_ready_campaigns_and_never_one_twice_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = asyncio.Event()
    read: list[str] = []

    async def track(_: object, body: Mapping[str, Any]) -> None:
        read.append(body["metadata"]["name"])
        await release.wait()

    monkeypatch.setattr(progress_loop, "track_progress", track)

    async def scenario() -> None:
        loop = loop_over(
            campaign("a"), campaign("new", ready=False), campaign("gone", deleting=True)
        )
        assert loop.tick() == ["ns/a"]
        await asyncio.sleep(0)
        assert loop.tick() == [], "a campaign still being read is not read again"
        release.set()
        for _ in range(3):
            await asyncio.sleep(0)
        assert loop.tick() == ["ns/a"], "read again once the first read ended"
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert read == ["a", "a"]


class Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_a_failing_read_is_logged_and_the_others_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # On the loop's own logger: other tests may have configured the root's handlers.
    recorded = Recorded()
    logger = logging.getLogger(progress_loop.__name__)
    logger.addHandler(recorded)
    monkeypatch.setattr(logger, "disabled", False)
    read: list[str] = []

    async def track(_: object, body: Mapping[str, Any]) -> None:
        name = body["metadata"]["name"]
        if name == "bad":
            raise RuntimeError("schema dropped by hand")
        read.append(name)

    monkeypatch.setattr(progress_loop, "track_progress", track)

    async def scenario() -> list[str]:
        loop = loop_over(campaign("bad"), campaign("good"))
        first = loop.tick()
        for _ in range(3):
            await asyncio.sleep(0)
        return first + loop.tick()

    try:
        assert asyncio.run(scenario()) == ["ns/bad", "ns/good", "ns/bad", "ns/good"]
    finally:
        logger.removeHandler(recorded)
    assert read == ["good", "good"]
    text = "\n".join(recorded.lines)
    assert "progress of ns/bad failed" in text
    assert "schema dropped by hand" in text


def test_nothing_is_read_before_a_handler_context_is_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Events of a read go through Kopf's queue, known only inside its handlers."""
    loop = loop_over(campaign("a"))
    cast(Any, loop)._ctx.handler_context = None
    assert loop.tick() == []


def test_reads_run_in_the_handler_context(monkeypatch: pytest.MonkeyPatch) -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker")
    seen: list[str] = []

    async def track(_: object, body: Mapping[str, Any]) -> None:
        seen.append(marker.get("unset"))

    monkeypatch.setattr(progress_loop, "track_progress", track)

    async def scenario() -> None:
        loop = loop_over(campaign("a"))
        marker.set("kopf's")
        cast(Any, loop)._ctx.handler_context = contextvars.copy_context()
        marker.set("the loop's")
        loop.tick()
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(scenario())
    assert seen == ["kopf's"]


def test_a_failing_tick_does_not_end_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []

    async def track(_: object, body: Mapping[str, Any]) -> None:
        read.append(body["metadata"]["name"])

    monkeypatch.setattr(progress_loop, "track_progress", track)
    loop = ProgressLoop(cast(Any, loop_over(campaign("a")))._ctx, tick_seconds=0.001)
    status = cast(Any, loop)._ctx.status
    real = status.known_campaigns
    calls = iter([RuntimeError("first tick breaks")])

    def flaky() -> Any:
        failure = next(calls, None)
        if failure is not None:
            raise failure
        return real()

    status.known_campaigns = flaky

    async def scenario() -> None:
        runner = asyncio.create_task(loop.run())
        for _ in range(200):
            if read:
                break
            await asyncio.sleep(0.001)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner

    asyncio.run(scenario())
    assert read[:1] == ["a"], "the tick after the failing one read the campaign"
