"""Simulated labelers: coroutines that claim a task, label it and claim the next, over the
worker's labeler API, against a campaign's worker or a LabelerPool's router alike.

Shared by the pool's end-to-end test (tests/e2e/test_pool_fair_share.py) and the router
benchmark (bench/bench_router.py, which puts tests/ on sys.path). Each labeler keeps one
keep-alive HTTP/1.1 connection and holds one task at a time; the client speaks just enough
of the protocol for this API (every answer carries a Content-Length, or is a 204), so it
costs the machine's cores far less than the servers it drives.

A labeler that gets no task (204, or 429/503 with Retry-After) waits a little and asks
again: that is the labeler's pace, not a test waiting for a condition; so is `think`, the
time a labeler looks at a task before submitting it (none: a closed loop, as fast as the
servers answer). with_next and idempotency do what the labeling page does (worker/static/
app.js: every submit asks ?next=true and carries an Idempotency-Key). What the labelers
saw is kept (`CrowdRun`): every accepted label with the campaign the reply named (a
router's task carries "campaign"; a worker's does not, so `campaign` names it), claim and
submit latencies, and every answer's status. The e2e test does not trust these for the
shares: it counts the labels stored in each campaign's schema.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

# After a claim without a task: wait this long before the next one (a 429/503's Retry-After
# when it says more, up to MAX_RETRY_WAIT).
NO_TASK_WAIT = 0.05
MAX_RETRY_WAIT = 1.0


def pairwise_label(task: Mapping[str, Any]) -> bytes:
    """Prefer the first response shown (pairwise tasks: {"preferred": <response id>})."""
    responses = (task.get("payload") or {}).get("responses") or [{"id": "a"}]
    return json.dumps({"value": {"preferred": responses[0]["id"]}}).encode()


class HttpConnection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self._head = f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers lower-cased, body); reconnects once if the server had closed
        the kept-alive connection. headers: more request headers."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        for attempt in (1, 2):
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                return await self._exchange(method, path, body, extra)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(
        self, method: str, path: str, body: bytes | None, extra: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._reader is not None and self._writer is not None
        head = f"{method} {path} HTTP/1.1\r\n{self._head}{extra}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        else:
            head += "Content-Length: 0\r\n"
        self._writer.write(head.encode() + b"\r\n" + (body or b""))
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionResetError("the server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        data = await self._reader.readexactly(length) if length else b""
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, data

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


@dataclass(frozen=True)
class Label:
    """An accepted label, as its labeler saw it (monotonic seconds)."""

    at: float
    labeler: str
    campaign: str
    item: str


@dataclass
class CrowdRun:
    labels: list[Label] = field(default_factory=list)
    claim_ms: list[float] = field(default_factory=list)  # the measured window only
    submit_ms: list[float] = field(default_factory=list)
    # What a labeler waits for between tasks: the round trip of the request that brought
    # each task (a claim's 200, or a submit whose receipt carried the next task).
    task_ms: list[float] = field(default_factory=list)
    accepted: int = 0  # labels accepted within the measured window
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # first few unexpected answers
    wall_seconds: float = 0.0

    def unexpected(self, what: str, status: int, body: bytes) -> None:
        self.outcomes[f"{what} {status}"] += 1
        if len(self.errors) < 20:
            self.errors.append(f"{what} {status}: {body[:300].decode(errors='replace')}")

    def by_campaign(self) -> Counter[str]:
        return Counter(label.campaign for label in self.labels)


def retry_wait(headers: Mapping[str, str]) -> float:
    try:
        return min(MAX_RETRY_WAIT, max(NO_TASK_WAIT, float(headers.get("retry-after", ""))))
    except ValueError:
        return NO_TASK_WAIT


async def label_until(
    port: int,
    tokens: Mapping[str, str],
    done: Callable[[], bool],
    *,
    campaign: str = "",
    measure_from: float = 0.0,
    with_next: bool = False,
    label_for: Callable[[Mapping[str, Any]], bytes] = pairwise_label,
    run: CrowdRun | None = None,
    think: Callable[[], float] | None = None,
    idempotency: bool = False,
) -> CrowdRun:
    """Every labeler (id -> bearer token) claims and labels until done() holds.

    campaign: what to record when a task names none (a worker's own tasks). Latencies and
    `accepted` count from measure_from (monotonic) on. with_next: submit with ?next=true and
    claim only when the receipt brought no next task. think: seconds to look at each task
    before submitting it (called once per task). idempotency: each submit carries an
    Idempotency-Key of its own.
    """
    run = run if run is not None else CrowdRun()
    started = time.monotonic()
    query = "?next=true" if with_next else ""

    async def labeler(labeler_id: str, token: str) -> None:
        connection = HttpConnection(port, token)
        task: dict[str, Any] | None = None
        try:
            while not done():
                began = time.monotonic()
                if task is None:
                    status, headers, body = await connection.request("POST", "/v1/tasks/claim")
                    claimed = time.monotonic()
                    if began >= measure_from:
                        run.claim_ms.append((claimed - began) * 1000)
                    if status != 200:
                        if status in (204, 429, 503):
                            run.outcomes[f"claim {status}"] += 1
                        else:
                            run.unexpected("claim", status, body)
                        await asyncio.sleep(retry_wait(headers))
                        continue
                    run.outcomes["claim 200"] += 1
                    if began >= measure_from:
                        run.task_ms.append((claimed - began) * 1000)
                    task = json.loads(body)
                    began = claimed
                assert task is not None
                if think is not None:
                    await asyncio.sleep(think())
                    began = time.monotonic()
                path = f"/v1/tasks/{quote(str(task['id']), safe='')}/labels{query}"
                key = {"Idempotency-Key": uuid.uuid4().hex} if idempotency else None
                status, _, body = await connection.request("POST", path, label_for(task), key)
                submitted = time.monotonic()
                if began >= measure_from:
                    run.submit_ms.append((submitted - began) * 1000)
                if status != 201:
                    run.unexpected("submit", status, body)
                    task = None
                    continue
                run.outcomes["submit 201"] += 1
                run.labels.append(
                    Label(submitted, labeler_id, str(task.get("campaign", campaign)), task["id"])
                )
                if submitted >= measure_from:
                    run.accepted += 1
                receipt = json.loads(body)
                task = receipt.get("next") if with_next else None
                if task is not None and began >= measure_from:
                    run.task_ms.append((submitted - began) * 1000)
        finally:
            connection.close()

    await asyncio.gather(*(labeler(who, token) for who, token in tokens.items()))
    run.wall_seconds = time.monotonic() - started
    return run


class Crowd:
    """label_until in a thread of its own, for synchronous tests: start(), then watch the
    stores, then stop() (the labelers finish the request they are in) for the CrowdRun."""

    def __init__(self, port: int, tokens: Mapping[str, str], *, with_next: bool = False) -> None:
        self.run = CrowdRun()
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(
            target=self._main, args=(port, dict(tokens), with_next), name="crowd", daemon=True
        )

    def _main(self, port: int, tokens: dict[str, str], with_next: bool) -> None:
        try:
            labeling = label_until(
                port, tokens, self._stop.is_set, with_next=with_next, run=self.run
            )
            asyncio.run(labeling)
        except BaseException as err:  # reported by stop() and alive()
            self._failure = err

    def start(self) -> Crowd:
        self._thread.start()
        return self

    def alive(self) -> bool:
        """Still labeling; raises what made the labelers stop, if they did."""
        if self._failure is not None:
            raise AssertionError(f"the simulated labelers failed: {self._failure!r}")
        return self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> CrowdRun:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the simulated labelers did not stop within {timeout:.0f}s")
        if self._failure is not None:
            raise AssertionError(f"the simulated labelers failed: {self._failure!r}")
        return self.run


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    if not samples_ms:
        return {}
    ordered = sorted(samples_ms)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"count": len(ordered), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0)}


# --- what the campaigns stored ----------------------------------------------------------


@dataclass(frozen=True)
class StoredLabel:
    """A human label as its campaign's schema holds it (created_at in epoch seconds)."""

    at: float
    campaign: str
    labeler: str


def stored_labels(dsn: str, schemas: Mapping[str, str]) -> list[StoredLabel]:
    """Every human label of the campaigns (campaign -> schema), oldest first."""
    import psycopg
    from psycopg import sql

    found: list[StoredLabel] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for campaign, schema in schemas.items():
            rows = conn.execute(
                sql.SQL(
                    "SELECT extract(epoch FROM created_at)::float8, labeler FROM {}"
                    " WHERE origin = 'human'"
                ).format(sql.Identifier(schema, "labels"))
            ).fetchall()
            found += [StoredLabel(float(at), campaign, str(who)) for at, who in rows]
    return sorted(found, key=lambda label: label.at)


def counts_between(
    labels: list[StoredLabel], start: float, end: float, campaigns: list[str]
) -> dict[str, int]:
    """Labels per campaign with start <= created_at < end."""
    counts = dict.fromkeys(campaigns, 0)
    for label in labels:
        if start <= label.at < end and label.campaign in counts:
            counts[label.campaign] += 1
    return counts


def shares_of(counts: Mapping[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {c: (n / total if total else 0.0) for c, n in counts.items()}


def nominal_shares(weights: Mapping[str, int], with_work: list[str]) -> dict[str, float]:
    """weight / sum of the weights of the campaigns with work (one priority tier)."""
    total = sum(weights[c] for c in with_work)
    return {c: (weights[c] / total if c in with_work else 0.0) for c in weights}


def share_errors_over_time(
    labels: list[StoredLabel],
    weights: Mapping[str, int],
    last_label: Mapping[str, float],
    width: float,
) -> list[dict[str, Any]]:
    """Per window of `width` seconds: each campaign's actual share of the window's labels
    minus its nominal share among the campaigns that still had work (whose last label came
    after the window). A window in which a campaign ran out is marked transition."""
    if not labels:
        return []
    start, end = labels[0].at, labels[-1].at
    windows = []
    at = start
    while at < end:
        until = at + width
        counts = counts_between(labels, at, until, list(weights))
        with_work = [c for c in weights if last_label[c] >= until]
        transition = any(at <= last_label[c] < until for c in weights)
        actual = shares_of(counts)
        nominal = nominal_shares(weights, with_work) if with_work else {}
        windows.append(
            {
                "fromSeconds": round(at - start, 2),
                "labels": sum(counts.values()),
                "withWork": with_work,
                "transition": transition,
                "errorPoints": {
                    c: round(100 * (actual[c] - nominal.get(c, 0.0)), 2) for c in weights
                },
            }
        )
        at = until
    return windows
