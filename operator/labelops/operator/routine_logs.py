"""Keep Kopf's routine success lines out of the operator's log.

Kopf logs "<handler> succeeded." at INFO after every run of every handler, and has no
setting for it (posting.level only decides which log lines become Events). For the handlers
that run on a clock or on every child's change rather than on a change a person made, that
is a line per campaign every few seconds: 200 lines a second at a thousand campaigns, which
drowns the lines that matter and costs the operator CPU to format and write. Those handlers'
success lines are dropped; their failures, retries and every other handler's lines stay.
"""

from __future__ import annotations

import logging
import re

KOPF_OBJECT_LOGGER = "kopf.objects"
_SUCCESS = re.compile(r"^(?:Timer|Handler|Daemon) '(?P<id>[^']+)' succeeded\.$")


def is_routine_success(message: str, routine: frozenset[str]) -> bool:
    """True for Kopf's success line of a handler whose id is in `routine`."""
    match = _SUCCESS.match(message)
    return match is not None and match.group("id") in routine


class RoutineSuccessFilter(logging.Filter):
    def __init__(self, routine: frozenset[str]) -> None:
        super().__init__()
        self.routine = routine

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        return not is_routine_success(record.getMessage(), self.routine)


def quiet_routine_successes(routine: frozenset[str]) -> None:
    """Drop the success lines of these handler ids from Kopf's per-object logger."""
    logger = logging.getLogger(KOPF_OBJECT_LOGGER)
    for existing in logger.filters:
        if isinstance(existing, RoutineSuccessFilter):
            existing.routine = existing.routine | routine
            return
    logger.addFilter(RoutineSuccessFilter(routine))
