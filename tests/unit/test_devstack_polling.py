"""devstack.procs.poll_until, the one polling loop of the stack's start-up and of the tests'
wait helpers: it returns the first answer that will do, retries the exceptions it is told to,
and times out with the last answer it saw."""

from __future__ import annotations

import pytest

from devstack.procs import TimedOut, poll_until


def test_returns_the_first_answer_that_holds() -> None:
    falsy_first: list[object] = [0, "", 3, 4]
    assert poll_until(lambda: falsy_first.pop(0), 5, interval=0) == 3
    counts = [1, 2, 7, 8]
    assert poll_until(lambda: counts.pop(0), 5, until=lambda n: n > 5, interval=0) == 7


def test_an_exception_it_retries_on_is_not_yet_and_others_go_through() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not up")
        return "up"

    assert poll_until(flaky, 5, interval=0, retry_on=(ConnectionError,)) == "up"
    assert len(calls) == 3
    empty: dict[str, str] = {}
    with pytest.raises(KeyError):
        poll_until(lambda: empty["missing"], 5, interval=0, retry_on=(ConnectionError,))


def test_times_out_with_the_last_answer() -> None:
    with pytest.raises(TimedOut) as out:
        poll_until(lambda: 0, 0.05, interval=0.01)
    assert out.value.last == 0

    def refused() -> bool:
        raise ConnectionError("refused")

    with pytest.raises(TimedOut) as out:
        poll_until(refused, 0.05, interval=0.01, retry_on=(ConnectionError,))
    assert isinstance(out.value.last, ConnectionError)
