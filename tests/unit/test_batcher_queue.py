"""The batcher's queue and writers (labelops.store.batching.Batcher), with the database call
replaced by plain data: who gets which answer, and that no request is ever left waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from labelops.store.batching import Batcher


class Doubling(Batcher[int, int]):
    """Answers n with 2n, or raises for negative n, after a pause like a commit's."""

    def __init__(self, writers: int) -> None:
        super().__init__(pool=None, config=None, queries=None, writers=writers)  # type: ignore[arg-type]
        self.sizes: list[int] = []

    def _statement(self, requests: Sequence[int]) -> tuple[bytes, tuple[Any, ...]]:
        raise AssertionError("not used: _run is replaced")

    def _answer(self, row: Sequence[Any], request: int) -> int:
        raise AssertionError("not used: _run is replaced")

    async def _run(self, requests: list[int]) -> list[Any]:
        self.sizes.append(len(requests))
        await asyncio.sleep(0.001)
        return [ValueError(f"negative: {n}") if n < 0 else 2 * n for n in requests]


@pytest.mark.parametrize("writers", [1, 2])
def test_a_request_made_as_the_last_batch_ends_still_gets_a_writer(writers: int) -> None:
    """Each caller submits again the moment its answer arrives, which is just when the
    writer that answered it stops: the new request must not wait forever."""
    batcher = Doubling(writers)

    async def caller(first: int) -> list[int]:
        return [await batcher.submit(first + k) for k in range(20)]

    async def main() -> list[list[int]]:
        return await asyncio.wait_for(asyncio.gather(*(caller(100 * c) for c in range(8))), 10)

    answers = asyncio.run(main())
    assert answers == [[2 * (100 * c + k) for k in range(20)] for c in range(8)]


def test_requests_queued_together_share_a_batch_and_keep_their_own_answers() -> None:
    batcher = Doubling(writers=1)

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(batcher.submit(n) for n in [1, -2, 3, 4]), return_exceptions=True
        )

    first, refused, *rest = asyncio.run(main())
    assert first == 2 and rest == [6, 8]
    assert isinstance(refused, ValueError) and str(refused) == "negative: -2"
    # The first request starts the writer alone; the three queued meanwhile go together.
    assert batcher.sizes == [1, 3] or batcher.sizes == [4]
    assert batcher.largest_batch == max(batcher.sizes)


def test_no_more_batches_run_at_once_than_there_are_writers() -> None:
    running = 0
    most = 0

    class Counting(Doubling):
        async def _run(self, requests: list[int]) -> list[Any]:
            nonlocal running, most
            running += 1
            most = max(most, running)
            try:
                return await super()._run(requests)
            finally:
                running -= 1

    batcher = Counting(writers=2)

    async def arrive(n: int) -> int:
        await asyncio.sleep(0.0002 * n)  # arrivals spread over batches that take 1 ms
        return await batcher.submit(n)

    async def main() -> list[int]:
        return await asyncio.gather(*(arrive(n) for n in range(100)))

    assert asyncio.run(main()) == [2 * n for n in range(100)]
    assert most == 2, "two batches overlapped, and never more"
