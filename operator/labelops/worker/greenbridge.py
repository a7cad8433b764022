"""Run synchronous code (the Flask app, the store) on an asyncio event loop, letting it wait
for awaitables without blocking the loop.

    result = await run_sync(fn, *args)   # on the loop: fn runs in a greenlet of its own
    value = wait_for(awaitable)          # inside fn, however deep: the loop runs meanwhile
    results = run_each([f, g])           # inside fn: f and g on greenlets of their own, at once

run_sync starts fn in a greenlet. When fn (or anything it calls) calls wait_for(x), the
greenlet switches back to run_sync with x; run_sync awaits x, which lets the loop serve
other requests, and switches into the greenlet again with the result (or throws the
exception into it). So synchronous code keeps its shape while many such calls share one
thread: no thread per request, and no lock handed between threads on every request.

Each greenlet has its own contextvars context (greenlet >= 1.0), so Flask's request and
application contexts of concurrent requests stay apart.

wait_for outside run_sync (in a plain thread, say a test calling the store directly) is a
programming error and raises; callers check in_bridge() first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import greenlet

T = TypeVar("T")


class _BridgedGreenlet(greenlet.greenlet):
    """Marks greenlets started by run_sync: only they may call wait_for."""


async def run_sync(fn: Callable[..., T], *args: Any) -> T:
    child = _BridgedGreenlet(fn, parent=greenlet.getcurrent())
    request = child.switch(*args)
    while not child.dead:
        try:
            value = await request
        except BaseException as exc:  # handed to the code that waits for it
            request = child.throw(exc)
        else:
            request = child.switch(value)
    return cast(T, request)


def in_bridge() -> bool:
    """True inside a run_sync call (on its greenlet), where wait_for may be used."""
    return isinstance(greenlet.getcurrent(), _BridgedGreenlet)


def wait_for(awaitable: Awaitable[T]) -> T:
    current = greenlet.getcurrent()
    if not isinstance(current, _BridgedGreenlet):
        raise RuntimeError("wait_for() called outside run_sync(): nothing would run the loop")
    return cast(T, current.parent.switch(awaitable))


def run_each(work: Sequence[Callable[[], T]]) -> list[T]:
    """Each of `work` on a greenlet of its own, all at once, their results in order: what they
    wait for, they wait for together (the store's group commit takes their labels in one
    batch). Outside run_sync, one after the other. An exception of one is raised after all
    finished; callers that want every result catch their own."""
    if not in_bridge():
        return [fn() for fn in work]
    return wait_for(_gathered(work))


async def _gathered(work: Sequence[Callable[[], T]]) -> list[T]:
    return list(await asyncio.gather(*(run_sync(fn) for fn in work)))
