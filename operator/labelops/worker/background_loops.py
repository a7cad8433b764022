"""A worker's long-running loops (ingest, outbox relay, quality job), each in its own thread.

A loop that dies requests the worker's shutdown, which then exits non-zero, so Kubernetes
restarts the pod instead of leaving a worker that accepts labels but never relays them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("labelops.worker")


class BackgroundTask:
    """A long-running loop (`run(stop)`) in its own thread; a crash requests shutdown."""

    def __init__(
        self,
        name: str,
        loop: Callable[[threading.Event], None],
        on_failure: Callable[[], None],
    ) -> None:
        self.name = name
        self.failed = False
        self.stop = threading.Event()
        self._loop = loop
        self._on_failure = on_failure
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self.stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("%s did not stop within %.0fs", self.name, timeout)

    def check_alive(self) -> None:
        if not self._thread.is_alive():
            raise RuntimeError(f"the {self.name} thread is not running")

    def _main(self) -> None:
        try:
            self._loop(self.stop)
        except Exception:
            log.exception("%s crashed", self.name)
            self._fail()
        else:
            if not self.stop.is_set():
                log.error("%s returned before shutdown was requested", self.name)
                self._fail()

    def _fail(self) -> None:
        self.failed = True
        self._on_failure()
