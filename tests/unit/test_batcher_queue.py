"""The batcher's queue and writers (labelops.store.batching.Batcher), with the database call
replaced by plain data: who gets which answer, how requests share batches, how many
batches run at once, and that no request is ever left waiting."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from labelops.store.batching import Batcher, BatcherClosed


class Doubling(Batcher[int, int]):
    """Answers n with 2n, or a ValueError for negative n."""

    def __init__(self, writers: int) -> None:
        super().__init__(pool=None, config=None, queries=None, writers=writers)  # type: ignore[arg-type]
        self.sizes: list[int] = []

    def _statement(self, requests: Sequence[int]) -> tuple[bytes, tuple[Any, ...]]:
        raise AssertionError("not used: _run is replaced")

    def _answers(self, rows: Sequence[Sequence[Any]], requests: Sequence[int]) -> list[Any]:
        raise AssertionError("not used: _run is replaced")

    def _run(self, requests: list[int]) -> list[Any]:
        self.sizes.append(len(requests))
        return [ValueError(f"negative: {n}") if n < 0 else 2 * n for n in requests]


class Gated(Doubling):
    """Each batch waits for `gate` before it commits, and tells `entered` it started."""

    def __init__(self, writers: int) -> None:
        super().__init__(writers)
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def _run(self, requests: list[int]) -> list[Any]:
        self.entered.release()
        assert self.gate.wait(10), "the test never opened the gate"
        return super()._run(requests)


@pytest.mark.parametrize("writers", [1, 2])
def test_callers_that_submit_again_at_once_are_all_answered(writers: int) -> None:
    """Each caller submits again the moment its answer arrives, which is just when the
    writer that answered it looks for more work: no request may wait forever."""
    batcher = Doubling(writers)

    def caller(first: int) -> list[int]:
        return [batcher.submit(first + k) for k in range(50)]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(caller, [100 * c for c in range(8)], timeout=20))
    batcher.close()
    assert answers == [[2 * (100 * c + k) for k in range(50)] for c in range(8)]


def test_requests_queued_while_a_batch_commits_share_the_next_one() -> None:
    batcher = Gated(writers=1)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(batcher.submit, 1)
        assert batcher.entered.acquire(timeout=10)  # the lone request went at once
        rest = pool.submit(batcher.submit_all, [-2, 3, 4])
        batcher.gate.set()
        assert first.result(10) == 2
        refused, *answers = rest.result(10)
    batcher.close()
    assert isinstance(refused, ValueError) and str(refused) == "negative: -2"
    assert answers == [6, 8]
    assert batcher.sizes == [1, 3]
    assert (batcher.batches, batcher.largest_batch) == (2, 3)


def test_a_refusal_is_raised_by_submit_to_its_own_caller_only() -> None:
    batcher = Doubling(writers=1)
    with pytest.raises(ValueError, match="negative: -5"):
        batcher.submit(-5)
    assert batcher.submit(5) == 10
    batcher.close()


def test_as_many_batches_run_at_once_as_there_are_writers_and_no_more() -> None:
    batcher = Gated(writers=2)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(batcher.submit, 1)
        assert batcher.entered.acquire(timeout=10)
        second = pool.submit(batcher.submit, 2)
        # The idle writer takes it while the first batch still commits.
        assert batcher.entered.acquire(timeout=10), "the second writer did not start"
        third = pool.submit(batcher.submit, 3)
        # Both writers are busy: the third request waits for one of them.
        assert not batcher.entered.acquire(timeout=0.3), "a third batch ran at once"
        batcher.gate.set()
        assert [f.result(10) for f in (first, second, third)] == [2, 4, 6]
    batcher.close()
    assert sorted(batcher.sizes) == [1, 1, 1]


def test_a_batch_that_fails_as_a_whole_fails_each_of_its_requests() -> None:
    class Broken(Doubling):
        def _run(self, requests: list[int]) -> list[Any]:
            raise ConnectionError("database unreachable")

    batcher = Broken(writers=1)
    answers = batcher.submit_all([1, 2])
    assert [type(a) for a in answers] == [ConnectionError, ConnectionError]
    # The writer goes on serving after a failed batch.
    assert [type(a) for a in batcher.submit_all([3])] == [ConnectionError]
    batcher.close()


def test_after_close_submit_is_refused() -> None:
    batcher = Doubling(writers=2)
    assert batcher.submit(1) == 2
    batcher.close()
    with pytest.raises(BatcherClosed, match="closed"):
        batcher.submit(2)


# The worker's HTTP processes run the batcher after gevent patched threading.
UNDER_GEVENT = """
from gevent import monkey

monkey.patch_all()

import gevent

from labelops.store.batching import Batcher

os_thread = monkey.get_original("_thread", "get_native_id")


class Doubling(Batcher):
    _statement = _answers = None  # not used: _run is replaced

    def _run(self, requests):
        self.sizes.append(len(requests))
        self.os_threads.add(os_thread())
        gevent.sleep(0.002)  # a commit's wait: the other greenlets run meanwhile
        return [2 * n for n in requests]


batcher = Doubling(None, None, None, writers=1)
batcher.sizes, batcher.os_threads = [], set()
callers = [
    gevent.spawn(lambda c=c: [batcher.submit(100 * c + k) for k in range(20)])
    for c in range(50)
]
gevent.joinall(callers, timeout=20)
assert [g.value for g in callers] == [[2 * (100 * c + k) for k in range(20)] for c in range(50)]
print(max(batcher.sizes), len(batcher.os_threads), batcher.os_threads == {os_thread()})
"""


def test_under_gevent_one_writer_greenlet_batches_many_waiting_greenlets() -> None:
    done = subprocess.run(
        [sys.executable, "-c", UNDER_GEVENT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    largest, os_threads, on_the_main_thread = done.stdout.split()
    # 50 greenlets waited on one batch at a time, all in the process's one thread.
    assert int(largest) > 10
    assert (os_threads, on_the_main_thread) == ("1", "True")
