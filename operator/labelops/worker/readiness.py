"""Readiness: is this worker able to serve labelers right now?

Kubernetes probes every few seconds and every worker replica is probed, so the checks are
cheap and their outcome is cached briefly; concurrent probes share one run of the checks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg_pool import ConnectionPool

# A check returns when the dependency is fine and raises with a reason when it is not.
ReadinessCheck = Callable[[], None]

CACHE_SECONDS = 2.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str]  # check name -> "ok" or why it failed


class ReadinessProbe:
    def __init__(
        self,
        checks: Mapping[str, ReadinessCheck],
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._checks = dict(checks)
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last: Readiness | None = None
        self._checked_at = 0.0

    def readiness(self) -> Readiness:
        with self._lock:
            if self._last is None or self._clock() - self._checked_at >= self._cache_seconds:
                self._last = self._run_checks()
                self._checked_at = self._clock()
            return self._last

    def _run_checks(self) -> Readiness:
        outcomes: dict[str, str] = {}
        for name, check in self._checks.items():
            try:
                check()
            except Exception as err:  # any failure means "not ready", with its reason
                outcomes[name] = f"{type(err).__name__}: {err}"
            else:
                outcomes[name] = "ok"
        ready = all(outcome == "ok" for outcome in outcomes.values())
        if not ready:
            log.warning("not ready: %s", outcomes)
        return Readiness(ready, outcomes)


# A probe answers within a second or two; a pool that cannot hand out a connection in this
# time is as good as down.
DATABASE_CHECK_TIMEOUT = 2.0


def database_check(pool: ConnectionPool[Any]) -> ReadinessCheck:
    """The campaign's database hands out a connection promptly and accepts writes.

    A server that answers but is read-only (a standby, or a primary failing over; writes
    fail with SQLSTATE 25006) cannot take a label: the worker is not ready then either.
    Kafka is deliberately not checked: during a broker outage the outbox keeps every
    accepted label and ingest resumes by itself, so a worker that cannot reach Kafka still
    serves labelers (the outbox backlog and ingest lag metrics show the outage).
    """

    def check() -> None:
        with pool.connection(timeout=DATABASE_CHECK_TIMEOUT) as conn:
            row = conn.execute("SELECT current_setting('transaction_read_only')").fetchone()
        if row is None or row[0] != "off":
            raise RuntimeError("the database is read-only (a standby, or failing over)")

    return check
