"""Labelers' submissions to one campaign, sent to its worker in batches (POST /v1/relay/labels).

    relay = SubmitRelay(send)               # send(body, retry) -> the worker's Upstream answer
    answer = await relay.submit(Relayed(labeler, item_id, body, key, with_next))
    # the submission's own Upstream (its status and document), or None: send it alone

The same group commit as the worker's (labelops.store.batching), one hop earlier: at most
`in_flight` batches go to the worker at once, and what arrives meanwhile goes in the next.
Nothing waits for a batch to fill: a lone submission goes at once, so a labeler alone sees
one request as before; under load the batches grow by themselves. A batch costs the router
one request to write and one answer to read, and the worker one request to parse, however
many labels it holds; the worker stores them together in one commit.

Each submission gets its own answer: its status and receipt or problem from the batch's
results. A batch the worker answers as a whole with anything but 200 (401, 503 while it
drains, unreachable) answers each submission with that. A worker that does not know the
endpoint (404 or 405: it runs an older image during a rollout) makes the relay answer None
for RETRY_UNSUPPORTED_SECONDS, and the router sends each submission alone meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from labelops.router.upstream import JSON, PROBLEM_JSON, Upstream

# The worker's RELAY_BATCH_MAX (worker/openapi_document.py), and bytes well under its 1 MiB
# limit on a request's body.
MAX_SUBMISSIONS = 64
MAX_BATCH_BYTES = 512 * 1024
# A labeler's body larger than this goes alone (a long free-text answer): a batch of them
# would pass the byte limit.
MAX_RELAYED_BODY_BYTES = 16 * 1024
RETRY_UNSUPPORTED_SECONDS = 60.0
# Room for a submission's envelope (labeler, item id, key) beside its body.
ENVELOPE_BYTES = 600


@dataclass(frozen=True)
class Relayed:
    """One labeler's submission: body is their request's body, JSON already parsed once."""

    labeler: str
    item_id: str
    body: bytes
    idempotency_key: str | None
    with_next: bool


Send = Callable[[bytes, bool], Awaitable[Upstream]]


class SubmitRelay:
    def __init__(
        self,
        send: Send,
        *,
        in_flight: int = 4,
        clock: Callable[[], float] = time.monotonic,
        sent: Callable[[int], None] = lambda submissions: None,
    ) -> None:
        """send(body, retry) posts a batch and returns the worker's answer; sent(n) hears
        each batch's size (the router's metrics)."""
        self._send = send
        self._sent = sent
        self._in_flight = in_flight
        self._clock = clock
        self._queue: list[tuple[Relayed, asyncio.Future[Upstream | None]]] = []
        self._sending = 0
        self._unsupported_until = float("-inf")
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.submissions = 0

    @staticmethod
    def relayable(body: bytes, content_type: str) -> bool:
        """Whether a submission may go in a batch: a JSON body small enough that parses.
        Anything else goes alone, and the worker's own refusal (400, 413, 415) answers it."""
        if len(body) > MAX_RELAYED_BODY_BYTES or content_type != JSON:
            return False
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        return True

    async def submit(self, submission: Relayed) -> Upstream | None:
        if self._clock() < self._unsupported_until:
            return None
        future: asyncio.Future[Upstream | None] = asyncio.get_running_loop().create_future()
        self._queue.append((submission, future))
        if self._sending < self._in_flight:
            self._sending += 1
            task = asyncio.create_task(self._send_while_queued(), name="submit-relay")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _send_while_queued(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                try:
                    answers = await self._relay([s for s, _ in batch])
                except Exception as err:  # never leave a labeler waiting
                    failed = Upstream(None, error=f"{type(err).__name__}: {err}")
                    answers = [failed] * len(batch)
                for (_, future), answer in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        finally:
            # No await between the last look at the queue and this (see batching.Batcher).
            self._sending -= 1

    def _take(self) -> list[tuple[Relayed, asyncio.Future[Upstream | None]]]:
        size = 0
        count = 0
        for submission, _ in self._queue:
            size += len(submission.body) + ENVELOPE_BYTES
            if count and (count == MAX_SUBMISSIONS or size > MAX_BATCH_BYTES):
                break
            count += 1
        batch = self._queue[:count]
        del self._queue[:count]
        return batch

    async def _relay(self, batch: list[Relayed]) -> list[Upstream | None]:
        self.batches += 1
        self.submissions += len(batch)
        self._sent(len(batch))
        # A retry on a fresh connection is safe only when the worker can tell it from the
        # first try: every submission carries its labeler's Idempotency-Key.
        retry = all(s.idempotency_key is not None for s in batch)
        upstream = await self._send(batch_body(batch), retry)
        if upstream.status == 200:
            results = orjson.loads(upstream.body)["results"]
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results answered {len(batch)} submissions")
            return [_answer(r) for r in results]
        if upstream.status in (404, 405):
            self._unsupported_until = self._clock() + RETRY_UNSUPPORTED_SECONDS
            return [None] * len(batch)
        return [upstream] * len(batch)


def batch_body(batch: list[Relayed]) -> bytes:
    submissions = []
    for s in batch:
        element: dict[str, Any] = {
            "labeler": s.labeler,
            "itemId": s.item_id,
            "next": s.with_next,
            # Relayed as the labeler sent it: checked JSON, never parsed into objects here.
            "body": orjson.Fragment(s.body),
        }
        if s.idempotency_key is not None:
            element["idempotencyKey"] = s.idempotency_key
        submissions.append(element)
    return orjson.dumps({"submissions": submissions})


def _answer(result: dict[str, Any]) -> Upstream:
    """A submission's result as the worker would have answered it alone."""
    document = result["body"]
    status = int(result["status"])
    if status < 400:
        return Upstream(status, content_type=JSON, document=document)
    retry_after = document.get("retryAfter")
    headers = {"Retry-After": str(retry_after)} if isinstance(retry_after, int) else None
    return Upstream(status, content_type=PROBLEM_JSON, headers=headers, document=document)
