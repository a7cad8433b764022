"""The router's relay of submissions in batches (labelops.router.submit_relay), with plain
asyncio and a worker played by a function: what goes in a batch, and what each submission
gets back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from labelops.router.submit_relay import (
    MAX_RELAYED_BODY_BYTES,
    MAX_SUBMISSIONS,
    RETRY_UNSUPPORTED_SECONDS,
    Relayed,
    SubmitRelay,
    batch_body,
)
from labelops.router.upstream import Upstream

LABEL = b'{"value": {"preferred": "tie"}}'


def relayed(n: int, *, key: bool = True, body: bytes = LABEL) -> Relayed:
    return Relayed(f"labeler-{n}", f"item/{n}", body, f"key-{n}" if key else None, n % 2 == 0)


def receipts(batch: dict[str, Any]) -> bytes:
    """What a worker answers: a receipt each, or a 409 for items ending in 'taken'."""
    results = []
    for s in batch["submissions"]:
        if s["itemId"].endswith("taken"):
            problem = {"type": "x/already-labeled", "title": "t", "status": 409, "detail": "d"}
            results.append({"status": 409, "body": problem})
        else:
            results.append({"status": 201, "body": {"itemId": s["itemId"], "by": s["labeler"]}})
    return orjson.dumps({"results": results})


async def until(condition: Callable[[], bool]) -> None:
    """Lets the loop run until condition holds (no wall-clock time: loop iterations)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def idle() -> None:
    """Lets the loop run every task as far as it can go."""
    for _ in range(20):
        await asyncio.sleep(0)


class Worker:
    """Answers batches; while `hold` is clear, the first one waits (a commit in progress)."""

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []
        self.retries: list[bool] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.answer: Upstream | None = None

    async def send(self, body: bytes, retry: bool) -> Upstream:
        batch = orjson.loads(body)
        self.batches.append(batch)
        self.retries.append(retry)
        await self.hold.wait()
        if self.answer is not None:
            return self.answer
        return Upstream(200, receipts(batch), "application/json")


def test_a_lone_submission_goes_at_once_and_gets_its_own_receipt() -> None:
    async def main() -> None:
        worker = Worker()
        relay = SubmitRelay(worker.send, in_flight=1)
        answer = await relay.submit(relayed(1))
        assert answer is not None and answer.status == 201
        assert answer.document == {"itemId": "item/1", "by": "labeler-1"}
        [batch] = worker.batches
        assert batch["submissions"] == [
            {
                "labeler": "labeler-1",
                "itemId": "item/1",
                "next": False,
                "body": {"value": {"preferred": "tie"}},
                "idempotencyKey": "key-1",
            }
        ]

    asyncio.run(main())


def test_submissions_that_arrive_during_a_batch_go_together_in_the_next() -> None:
    async def main() -> None:
        worker = Worker()
        worker.hold.clear()
        relay = SubmitRelay(worker.send, in_flight=1)
        first = asyncio.create_task(relay.submit(relayed(0)))
        await until(lambda: len(worker.batches) == 1)  # at the worker, which holds it
        later = [asyncio.create_task(relay.submit(relayed(n))) for n in range(1, 6)]
        await idle()
        assert len(worker.batches) == 1  # the others wait for the one in flight
        worker.hold.set()
        answers = [await first, *[await t for t in later]]
        assert [len(b["submissions"]) for b in worker.batches] == [1, 5]
        # Each got its own answer, in its own order.
        assert [a.document["by"] for a in answers if a is not None] == [
            f"labeler-{n}" for n in range(6)
        ]
        assert relay.batches == 2 and relay.submissions == 6

    asyncio.run(main())


def test_in_flight_batches_are_bounded_and_a_batch_is_capped_in_size() -> None:
    async def main() -> None:
        worker = Worker()
        worker.hold.clear()
        relay = SubmitRelay(worker.send, in_flight=2)
        tasks = []
        for n in range(2):  # one after the other: each finds a free slot and goes at once
            tasks.append(asyncio.create_task(relay.submit(relayed(n))))
            await until(lambda: len(worker.batches) == len(tasks))
        tasks += [
            asyncio.create_task(relay.submit(relayed(n))) for n in range(2, MAX_SUBMISSIONS + 12)
        ]
        await idle()
        assert len(worker.batches) == 2  # both slots taken: the rest queue
        worker.hold.set()
        answers = await asyncio.gather(*tasks)
        sizes = [len(b["submissions"]) for b in worker.batches]
        assert sizes[:2] == [1, 1] and max(sizes) == MAX_SUBMISSIONS and sum(sizes) == len(tasks)
        assert all(a is not None and a.status == 201 for a in answers)

    asyncio.run(main())


def test_each_submission_gets_its_own_refusal_with_its_problem() -> None:
    async def main() -> None:
        worker = Worker()
        relay = SubmitRelay(worker.send)
        taken = Relayed("ann", "i-taken", LABEL, None, False)
        ok, refused = await asyncio.gather(relay.submit(relayed(1)), relay.submit(taken))
        assert ok is not None and ok.status == 201
        assert refused is not None and refused.status == 409
        assert refused.content_type == "application/problem+json"
        assert refused.problem_kind() == "x/already-labeled"
        response = refused.relayed()
        assert isinstance(response.body, bytes) and response.status == 409
        assert orjson.loads(response.body)["detail"] == "d"

    asyncio.run(main())


def test_a_batch_refused_whole_answers_each_and_retries_only_with_every_key() -> None:
    async def main() -> None:
        worker = Worker()
        worker.answer = Upstream(
            503, b'{"status": 503}', "application/problem+json", {"Retry-After": "1"}
        )
        relay = SubmitRelay(worker.send)
        answers = await asyncio.gather(relay.submit(relayed(1)), relay.submit(relayed(2)))
        assert [a.status for a in answers if a is not None] == [503, 503]
        assert all(a is not None and a.relayed().headers["Retry-After"] == "1" for a in answers)
        await relay.submit(relayed(3, key=False))
        # The first two carried keys (a retry is safe); the last did not.
        assert worker.retries[0] is True and worker.retries[-1] is False

    asyncio.run(main())


def test_a_worker_without_the_endpoint_gets_single_submissions_for_a_while() -> None:
    async def main() -> None:
        now = [100.0]
        worker = Worker()
        worker.answer = Upstream(404, b"{}", "application/problem+json")
        relay = SubmitRelay(worker.send, clock=lambda: now[0])
        assert await relay.submit(relayed(1)) is None  # the router sends it alone
        assert await relay.submit(relayed(2)) is None
        assert len(worker.batches) == 1  # the second did not try again
        now[0] += RETRY_UNSUPPORTED_SECONDS + 1
        worker.answer = None
        answer = await relay.submit(relayed(3))
        assert answer is not None and answer.status == 201

    asyncio.run(main())


def test_a_worker_that_cannot_be_reached_or_answers_wrong_leaves_nobody_waiting() -> None:
    async def main() -> None:
        async def broken(body: bytes, retry: bool) -> Upstream:
            return Upstream(200, b'{"results": []}', "application/json")

        async def unreachable(body: bytes, retry: bool) -> Upstream:
            return Upstream(None, error="ClientConnectorError: refused")

        for send, error in ((broken, "0 results answered 1"), (unreachable, "refused")):
            answer = await SubmitRelay(send).submit(relayed(1))
            assert answer is not None and answer.status is None and error in answer.error

    asyncio.run(main())


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (LABEL, "application/json", True),
        (LABEL, "text/plain", False),
        (b'{"value": ', "application/json", False),
        (b'{"value": "' + b"x" * MAX_RELAYED_BODY_BYTES + b'"}', "application/json", False),
    ],
)
def test_only_small_json_bodies_are_relayed(body: bytes, content_type: str, expected: bool) -> None:
    assert SubmitRelay.relayable(body, content_type) is expected


def test_the_batch_carries_each_body_as_sent() -> None:
    odd = b'{"value": {"preferred": "r\\u00e9ponse"}, "extra": [1, 2.50]}'
    document = orjson.loads(batch_body([relayed(1, body=odd, key=False)]))
    [submission] = document["submissions"]
    assert submission["body"] == orjson.loads(odd) and "idempotencyKey" not in submission
