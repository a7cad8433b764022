"""Simulated labelers for the demo: real HTTP clients of the worker API at a human pace.

Each labeler has a temperament: careful ones agree with the better response most of the
time, a noisy one disagrees more and sometimes calls a tie, a skipper releases tasks it
does not like, an eager one labels fast until the daily quota answers 429, and a random
clicker presses any of the three buttons without reading, fast, until the gold pairs give
them away and the worker answers 403 (blocked, with the rule and the figures).
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field

import requests

from devstack.demo.items import DemoItem


@dataclass(frozen=True)
class Temperament:
    kind: str
    accuracy: float  # chance of preferring the better response
    tie_rate: float
    skip_rate: float
    pace: tuple[float, float]  # seconds spent reading a task, min and max


# Only the skipper skips: a released task is never offered to that labeler again, and an
# item every labeler still at work has skipped or labeled could never complete.
CAREFUL = Temperament("careful", accuracy=0.96, tie_rate=0.01, skip_rate=0.0, pace=(0.15, 0.45))
NOISY = Temperament("noisy", accuracy=0.75, tie_rate=0.05, skip_rate=0.0, pace=(0.1, 0.3))
SKIPPER = Temperament("skipper", accuracy=0.92, tie_rate=0.02, skip_rate=0.2, pace=(0.15, 0.4))
EAGER = Temperament("eager", accuracy=0.88, tie_rate=0.0, skip_rate=0.0, pace=(0.02, 0.06))
# a, b or tie with one chance in three each: right a third of the time.
RANDOM_CLICKER = Temperament(
    "random clicker", accuracy=0.5, tie_rate=1 / 3, skip_rate=0.0, pace=(0.03, 0.1)
)

TEMPERAMENTS = {
    "alice": CAREFUL,
    "bob": CAREFUL,
    "carol": NOISY,
    "dave": EAGER,
    "erin": SKIPPER,
    "frank": CAREFUL,
    "grace": RANDOM_CLICKER,
    "heidi": CAREFUL,
    "ivan": CAREFUL,
    "judy": CAREFUL,
}
CARELESS = {name for name, t in TEMPERAMENTS.items() if t is not CAREFUL}


SUBMIT_ATTEMPTS = 20


def _retry_after(reply: requests.Response) -> tuple[float, float]:
    """How long to wait before the retry a 503's Retry-After asks for (seconds, jittered)."""
    try:
        seconds = min(10.0, max(0.5, float(reply.headers.get("Retry-After", "1"))))
    except ValueError:
        seconds = 1.0
    return seconds, seconds * 1.5


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    note: str = ""


class SimulatedLabeler(threading.Thread):
    def __init__(
        self,
        labeler: str,
        token: str,
        worker_url: str,
        items: dict[str, DemoItem],
        stop: threading.Event,
        seed: int,
    ) -> None:
        super().__init__(name=f"labeler-{labeler}", daemon=True)
        self.labeler = labeler
        self.temperament = TEMPERAMENTS.get(labeler, CAREFUL)
        self.temperament_name = self.temperament.kind
        self.url = worker_url
        self.items = items
        self.stop = stop
        self.rng = random.Random(seed)
        self.tally = Tally()
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def _pause(self, low: float, high: float) -> bool:
        """Wait like a person would; True when the demo is over."""
        return self.stop.wait(self.rng.uniform(low, high))

    def _choose(self, item: DemoItem) -> str:
        roll = self.rng.random()
        if roll < self.temperament.tie_rate:
            return "tie"
        worse = "b" if item.better == "a" else "a"
        return item.better if self.rng.random() < self.temperament.accuracy else worse

    def run(self) -> None:
        while not self.stop.is_set():
            claimed = self.http.post(f"{self.url}/v1/tasks/claim", timeout=10)
            if claimed.status_code == 403:
                self._blocked(claimed)
                return
            if claimed.status_code == 204:
                self.tally.outcomes["idle"] += 1
                if self._pause(0.5, 1.0):
                    return
                continue
            if claimed.status_code == 429:
                if self._quota_reached(claimed):
                    return
                continue
            claimed.raise_for_status()
            task = claimed.json()
            if self._pause(*self.temperament.pace):
                return
            if self.rng.random() < self.temperament.skip_rate:
                self.http.post(f"{self.url}/v1/tasks/{task['id']}/release", timeout=10)
                self.tally.outcomes["skipped"] += 1
                continue
            if self._submit(task["id"]):
                return

    def _submit(self, item_id: str) -> bool:
        """Submit a label; True when the labeler is blocked and stops.

        A 503 (the database briefly unavailable, or no connection free on a loaded machine)
        is retried after its Retry-After with the same Idempotency-Key, as a person on the
        labeling page would (it keeps the task and says when to try again): giving up would
        leave the task leased to this labeler until the lease expires.
        """
        value = {"preferred": self._choose(self.items[item_id])}
        key = str(uuid.uuid4())
        for _ in range(SUBMIT_ATTEMPTS):
            reply = self.http.post(
                f"{self.url}/v1/tasks/{item_id}/labels",
                json={"value": value},
                headers={"Idempotency-Key": key},
                timeout=10,
            )
            if reply.status_code != 503:
                break
            self.tally.outcomes["503 retried"] += 1
            if self._pause(*_retry_after(reply)):
                return True
        if reply.status_code == 403:
            self._blocked(reply)
            return True
        if reply.status_code == 429:
            self._quota_reached(reply)
            return False
        self.tally.outcomes[str(reply.status_code)] += 1
        return False

    def _blocked(self, reply: requests.Response) -> None:
        """Blocked by the quality rule (or a ban): the problem detail says why; stop."""
        self.tally.outcomes["403 blocked"] += 1
        self.tally.note = str(reply.json().get("detail", "blocked"))

    def _quota_reached(self, reply: requests.Response) -> bool:
        """Daily quota: stop for the day. Lease limit: wait as told by Retry-After."""
        problem = reply.json()
        if "daily" in str(problem.get("reason", "")) + str(problem.get("type", "")):
            self.tally.outcomes["429 daily quota"] += 1
            self.tally.note = problem.get("detail", "daily quota reached")
            return True
        self.tally.outcomes["429 leases"] += 1
        self._pause(1.0, 1.0 + min(5.0, float(reply.headers.get("Retry-After", "1"))))
        return False
