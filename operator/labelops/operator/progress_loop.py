"""One loop reads the progress of every campaign, when each one's schedule says so.

Why not a Kopf timer per campaign: a timer ticks at the labeling pace whether its campaign is
labeling, idle or Completed, and each tick goes through Kopf's handler machinery: a thousand
campaigns cost 200 ticks a second before a single read was due. The loop looks at every
campaign once a second in memory (the status writer's newest copy of each, handlers/
campaign_watch.py, with its generation and whether its schema is ready kept beside it) and
starts a read only for those due (progress_interval.py): about 3 a second for a thousand idle
campaigns, one every 5 s for each campaign being labeled.

Reads run in a copy of a Kopf handler's context (context.py: handler_context), so what
they post as Events (a target met, a labeler blocked) goes through Kopf's event queue as a
handler's would.

At most MAX_CONCURRENT_READS campaigns are read at once, and never one campaign twice at
once. A campaign whose read fails is logged and read again by its schedule; it never stops
the loop or delays the others beyond their turn for a read slot.
"""

from __future__ import annotations

import asyncio
import functools
import logging

import kopf

from labelops.operator.context import OperatorContext
from labelops.operator.metrics import measured
from labelops.operator.progress_interval import due_now
from labelops.operator.status_writer import now_utc
from labelops.operator.tracking import track_progress

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
MAX_CONCURRENT_READS = 8


class ProgressLoop:
    def __init__(self, ctx: OperatorContext, tick_seconds: float = TICK_SECONDS) -> None:
        self._ctx = ctx
        self._tick = tick_seconds
        self._reads = asyncio.Semaphore(MAX_CONCURRENT_READS)
        self._running: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        """Tick until cancelled; reads still running are cancelled with it."""
        try:
            while True:
                try:
                    self.tick()
                except Exception:  # a bug in one tick must not end progress for good
                    log.exception("progress loop: a tick failed; the next one follows")
                await asyncio.sleep(self._tick)
        finally:
            for task in list(self._running.values()):
                task.cancel()

    def tick(self) -> list[str]:
        """Start a read for each campaign due now; returns their keys."""
        ctx = self._ctx
        if ctx.handler_context is None:
            return []  # no campaign seen yet (their first events bring the context)
        eligible = [
            (known.key, known.generation)
            for known in ctx.status.known_campaigns()
            if known.schema_ready and not known.deleting
        ]
        due = due_now(now_utc(), eligible, ctx.schedules(), self._running)
        for key in due:
            namespace, _, name = key.partition("/")
            body = ctx.status.known_campaign(namespace, name)
            if body is None:
                continue
            task = asyncio.create_task(
                self._read(body), name=f"progress {key}", context=ctx.handler_context.copy()
            )
            self._running[key] = task
            task.add_done_callback(functools.partial(self._done, key))
        return due

    def _done(self, key: str, _: asyncio.Task[None]) -> None:
        self._running.pop(key, None)

    async def _read(self, body: dict[str, object]) -> None:
        async with self._reads:
            try:
                with measured("progress"):
                    await track_progress(self._ctx, body)
            except kopf.TemporaryError as err:
                # A pass it started (the target met) will be retried by its schedule.
                log.debug("progress of %s: %s", _key(body), err)
            except Exception:
                log.exception("progress of %s failed", _key(body))


def _key(body: dict[str, object]) -> str:
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        return "?"
    return f"{meta.get('namespace')}/{meta.get('name')}"
