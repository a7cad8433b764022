"""Kopf's routine success lines (timers, the Deployment watch) stay out of the log; failures
and the success of handlers that react to a person's change stay in."""

from __future__ import annotations

import logging

import pytest

from labelops.operator.routine_logs import (
    KOPF_OBJECT_LOGGER,
    RoutineSuccessFilter,
    is_routine_success,
    quiet_routine_successes,
)

ROUTINE = frozenset({"campaign-progress", "worker-rollout"})


@pytest.mark.parametrize(
    ("message", "dropped"),
    [
        ("Timer 'campaign-progress' succeeded.", True),
        ("Handler 'worker-rollout' succeeded.", True),
        ("Handler 'campaign-create' succeeded.", False),
        ("Timer 'campaign-progress' failed temporarily: not converged yet", False),
        ("Timer 'campaign-progress-x' succeeded.", False),
        ("Creation is processed: 1 succeeded; 0 failed.", False),
    ],
)
def test_only_routine_success_lines_are_recognised(message: str, dropped: bool) -> None:
    assert is_routine_success(message, ROUTINE) is dropped


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(KOPF_OBJECT_LOGGER, level, __file__, 1, message, None, None)


def test_filter_keeps_warnings_even_with_a_success_text() -> None:
    quiet = RoutineSuccessFilter(ROUTINE)
    assert not quiet.filter(record(logging.INFO, "Timer 'campaign-progress' succeeded."))
    assert quiet.filter(record(logging.WARNING, "Timer 'campaign-progress' succeeded."))
    assert quiet.filter(record(logging.INFO, "Handler 'campaign-create' succeeded."))


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_installed_once_on_kopfs_object_logger() -> None:
    # A handler on the logger itself, not caplog: other tests (Kopf's own logging setup)
    # may stop this logger from propagating to the root, where caplog listens.
    logger = logging.getLogger(KOPF_OBJECT_LOGGER)
    before, level, disabled = list(logger.filters), logger.level, logger.disabled
    kept = _Kept()
    logger.addHandler(kept)
    logger.setLevel(logging.INFO)
    logger.disabled = False
    try:
        quiet_routine_successes(frozenset({"campaign-progress"}))
        quiet_routine_successes(frozenset({"worker-rollout"}))
        added = [f for f in logger.filters if isinstance(f, RoutineSuccessFilter)]
        assert len(added) == 1 and added[0].routine >= ROUTINE
        logger.info("Timer 'campaign-progress' succeeded.")
        logger.info("Handler 'campaign-create' succeeded.")
        assert kept.messages == ["Handler 'campaign-create' succeeded."]
    finally:
        logger.removeHandler(kept)
        logger.filters[:] = before
        logger.setLevel(level)
        logger.disabled = disabled
