"""Readiness: is this worker able to serve labelers right now?

Kubernetes probes every few seconds and every worker replica is probed, so the checks are
cheap and their outcome is cached briefly; concurrent probes share one run of the checks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


KAFKA_CHECK_TIMEOUT = 1.5


def kafka_topics_check(admin: Any, topics: Sequence[str]) -> ReadinessCheck:
    """Kafka answers metadata requests and knows the campaign's topics.

    admin is a long-lived confluent_kafka AdminClient: one connection, reused by every probe.
    """

    def check() -> None:
        for topic in topics:
            metadata = admin.list_topics(topic=topic, timeout=KAFKA_CHECK_TIMEOUT)
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                why = found.error.str() if found is not None and found.error else "missing"
                raise RuntimeError(f"topic {topic}: {why}")

    return check
