"""Progress of running campaigns: one loop for all of them (progress_loop.py), started with
the operator and stopped with it. Each read is an O(1) read from the campaign's schema,
written to status only when it changed."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import kopf

from labelops.operator.progress_loop import ProgressLoop

LOOP_KEY = "progress_loop"


@kopf.on.startup(id="campaign-progress-start")
async def start(memo: kopf.Memo, **_: Any) -> None:
    memo[LOOP_KEY] = asyncio.create_task(ProgressLoop(memo.context).run(), name="progress")


@kopf.on.cleanup(id="campaign-progress-stop")
async def stop(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get(LOOP_KEY)
    if isinstance(task, asyncio.Task):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
