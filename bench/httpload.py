"""The worker benchmark's load: labelers as coroutines on raw keep-alive HTTP/1.1 sockets.

No HTTP library: the client shares the machine's cores with the worker it measures, so it
does as little as the protocol allows (this API always answers with a Content-Length).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Every item of the benchmark is pairwise with responses "a" and "b".
LABEL = json.dumps({"value": {"preferred": "a"}}).encode()


class HttpConnection:
    """One keep-alive HTTP/1.1 connection: just enough protocol for this API."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str | None
    ):
        self._reader = reader
        self._writer = writer
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self._headers = f"Host: 127.0.0.1\r\n{auth}"

    @classmethod
    async def open(cls, port: int, token: str | None) -> HttpConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, token)

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\n{self._headers}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        else:
            head += "Content-Length: 0\r\n"
        self._writer.write(head.encode() + b"\r\n" + (body or b""))
        status_line = await self._reader.readline()
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length) if length else b""

    def close(self) -> None:
        self._writer.close()


async def one_request(port: int, method: str, path: str, token: str | None) -> tuple[int, bytes]:
    connection = await HttpConnection.open(port, token)
    try:
        return await connection.request(method, path)
    finally:
        connection.close()


@dataclass
class Run:
    claim_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    accepted: int = 0  # within the measured window
    accepted_all: int = 0  # warmup included: what the CPU figures of the whole run paid for
    outcomes: Counter[str] = field(default_factory=Counter)
    wall_seconds: float = 0.0

    def summary(self, duration: float) -> dict[str, Any]:
        return {
            "acceptedLabels": self.accepted,
            "labelsPerSecond": round(self.accepted / duration, 1),
            "claimLatencyMs": percentiles(self.claim_ms),
            "submitLatencyMs": percentiles(self.submit_ms),
            "responses": dict(self.outcomes),
        }


async def label_concurrently(
    port: int, tokens: dict[str, str], warmup: float, duration: float, with_next: bool
) -> Run:
    """Every labeler claims and submits until the time is up. with_next: submissions ask for
    the next task (?next=true) and a labeler claims only when a receipt brought none."""
    run = Run()
    started = time.monotonic()
    measure_from = started + warmup
    stop_at = measure_from + duration
    query = "?next=true" if with_next else ""

    async def labeler(token: str) -> None:
        connection = await HttpConnection.open(port, token)
        task: dict[str, Any] | None = None
        try:
            while (now := time.monotonic()) < stop_at:
                if task is None:
                    status, body = await connection.request("POST", "/v1/tasks/claim")
                    claimed = time.monotonic()
                    if now >= measure_from:
                        run.claim_ms.append((claimed - now) * 1000)
                        run.outcomes[f"claim {status}"] += 1
                    if status != 200:
                        await asyncio.sleep(0.05)
                        continue
                    task = json.loads(body)
                    now = claimed
                assert task is not None
                path = f"/v1/tasks/{task['id']}/labels{query}"  # ids need no percent-encoding
                status, body = await connection.request("POST", path, LABEL)
                done = time.monotonic()
                task = json.loads(body).get("next") if with_next and status == 201 else None
                run.accepted_all += status == 201
                # A label counts in the window its submission completed in.
                if measure_from <= done < stop_at:
                    run.submit_ms.append((done - now) * 1000)
                    run.outcomes[f"submit {status}"] += 1
                    run.accepted += status == 201
        finally:
            connection.close()

    await asyncio.gather(*(labeler(token) for token in tokens.values()))
    run.wall_seconds = time.monotonic() - started
    return run


async def label_sequentially(port: int, token: str, rounds: int) -> dict[str, Any]:
    """Latency without queueing: one labeler, so nothing waits for a server thread."""
    connection = await HttpConnection.open(port, token)
    claims, submits = [], []
    try:
        for _ in range(rounds):
            began = time.monotonic()
            status, task = await connection.request("POST", "/v1/tasks/claim")
            claimed = time.monotonic()
            assert status == 200, task
            item = json.loads(task)["id"]
            status, receipt = await connection.request("POST", f"/v1/tasks/{item}/labels", LABEL)
            assert status == 201, receipt
            claims.append((claimed - began) * 1000)
            submits.append((time.monotonic() - claimed) * 1000)
    finally:
        connection.close()
    return {"claimLatencyMs": percentiles(claims), "submitLatencyMs": percentiles(submits)}


async def progress_latency(port: int, token: str, reads: int) -> dict[str, Any]:
    connection = await HttpConnection.open(port, token)
    samples = []
    try:
        for _ in range(reads):
            began = time.monotonic()
            status, _ = await connection.request("GET", "/v1/progress")
            samples.append((time.monotonic() - began) * 1000)
            assert status == 200
    finally:
        connection.close()
    return {"reads": reads, "latencyMs": percentiles(samples)}


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    if not samples_ms:
        return {}
    ordered = sorted(samples_ms)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"count": len(ordered), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0)}
