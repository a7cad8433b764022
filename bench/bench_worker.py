"""Benchmark of one worker process over HTTP, with the real PostgreSQL and Kafka.

    LABELOPS_POSTGRES_DSN=... LABELOPS_KAFKA_BOOTSTRAP=... python bench/bench_worker.py
    (without them, the local stack is started, or reused, with labelops.devstack)

What it does, and prints as JSON:
  ingest     --items item messages are produced to the items topic first; the worker's
             ingest consumer takes them in (items per second until all are claimable);
  oneLabeler a lone labeler claims and labels --sequential times: latency of the service
             itself, with no request waiting for another;
  labeling   --labelers concurrent labelers, each on its own keep-alive connection, loop
             claim -> submit for --duration seconds after --warmup: accepted labels per
             second, claim and submit latency percentiles (client-side, so they include the
             client's own scheduling: client and server share the machine's cores);
  relay      every accepted label must reach the labels topic: the labels are consumed back
             and de-duplicated by labelId; reported is how long after the load stopped the
             last one arrived, and the outbox backlog when the load stopped;
  progress   GET /v1/progress latency after the run.

The client is a small asyncio HTTP/1.1 client (one coroutine per labeler, raw keep-alive
sockets), so that it costs far less CPU than the server it measures; its CPU time and the
worker's are reported, since both compete for the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql

from labelops.api.workerconfig import (
    ENV_CAMPAIGN,
    ENV_KAFKA_BOOTSTRAP,
    ENV_POSTGRES_DSN,
    ENV_TOKEN_PREFIX,
    WorkerConfig,
)
from labelops.devstack.procs import free_port
from labelops.store.migrations import migrate
from labelops.worker.config import (
    ENV_HOST,
    ENV_PORT,
    ENV_RESPONSE_VALIDATION,
    ENV_THREADS,
)

QUIET_KAFKA = {"log_level": 0}


def main() -> None:
    args = parse_args()
    dsn, bootstrap = stack_settings()
    name = f"bench-{uuid.uuid4().hex[:6]}"
    config = campaign(name, args)
    tokens = {
        f"labeler{n:02d}": f"bench-token-{n:02d}-{uuid.uuid4().hex}" for n in range(args.labelers)
    }
    results: dict[str, Any] = {
        "machine": machine(dsn),
        "settings": {
            "labelers": args.labelers,
            "pendingItems": args.items,
            "labelsPerItem": args.labels_per_item,
            "durationSeconds": args.duration,
            "warmupSeconds": args.warmup,
            "workerThreads": args.threads,
            "responseValidation": args.response_validation,
        },
    }
    provision(dsn, bootstrap, config, args.partitions)
    worker: subprocess.Popen[bytes] | None = None
    try:
        log(f"producing {args.items} items to {config.topics.items}")
        produce_items(bootstrap, config, args.items)
        port = free_port()
        worker = start_worker(args, config, dsn, bootstrap, tokens, port)
        ingest_started = time.monotonic()
        wait_ready(port, worker)
        results["ingest"] = wait_ingested(port, tokens, args.items, ingest_started)
        log(f"one labeler, {args.sequential} claims and labels one after the other")
        results["oneLabeler"] = asyncio.run(label_sequentially(port, tokens, args.sequential))
        log(f"{args.labelers} labelers for {args.warmup}s warmup + {args.duration}s")
        cpu_before = cpu_seconds(worker.pid)
        client_before = own_cpu_seconds()
        run = asyncio.run(label_concurrently(port, tokens, args.warmup, args.duration))
        load_ended = time.monotonic()
        results["cpuSecondsDuringRun"] = {
            "worker": round(cpu_seconds(worker.pid) - cpu_before, 2),
            "benchClient": round(own_cpu_seconds() - client_before, 2),
            "wallSeconds": round(run.wall_seconds, 2),
        }
        backlog = count_rows(dsn, config.schema_, "outbox")
        results["labeling"] = run.summary(args.duration)
        log("waiting for the relay to publish every accepted label")
        results["relay"] = wait_relayed(
            bootstrap, config, count_rows(dsn, config.schema_, "labels"), load_ended, backlog
        )
        results["progress"] = asyncio.run(progress_latency(port, tokens, args.progress_reads))
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            results["workerExitCode"] = worker.wait(60)
        if not args.keep:
            drop(dsn, bootstrap, config)
    results["machine"]["loadAverageAtEnd"] = [round(x, 2) for x in os.getloadavg()]
    out = json.dumps(results, indent=2)
    print(out)
    if args.out:
        Path(args.out).write_text(out + "\n")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--labelers", type=int, default=32)
    p.add_argument("--items", type=int, default=100_000, help="pending items before the run")
    p.add_argument("--labels-per-item", type=int, default=3)
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=8, help="worker HTTP threads")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--response-validation", choices=["off", "log", "strict"], default="log")
    p.add_argument(
        "--sequential", type=int, default=500, help="claim+label rounds of the lone labeler"
    )
    p.add_argument("--progress-reads", type=int, default=500)
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--keep", action="store_true", help="keep the schema and topics")
    return p.parse_args()


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- the stack and the campaign -----------------------------------------------------------


def stack_settings() -> tuple[str, str]:
    if ENV_POSTGRES_DSN in os.environ and ENV_KAFKA_BOOTSTRAP in os.environ:
        return os.environ[ENV_POSTGRES_DSN], os.environ[ENV_KAFKA_BOOTSTRAP]
    from labelops.devstack import stack

    log("no LABELOPS_POSTGRES_DSN / LABELOPS_KAFKA_BOOTSTRAP: starting the local stack")
    env = stack.ensure_up(components=("postgres", "kafka")).env
    return env[ENV_POSTGRES_DSN], env[ENV_KAFKA_BOOTSTRAP]


def campaign(name: str, args: argparse.Namespace) -> WorkerConfig:
    prefix = f"labelops.bench.{name}"
    return WorkerConfig.model_validate(
        {
            "namespace": "bench",
            "name": name,
            "task": {"type": "pairwise", "instructions": "Pick the better response."},
            "target": {"items": args.items, "labelsPerItem": args.labels_per_item},
            "quotas": {"perLabelerDaily": 100_000, "maxLeasesPerLabeler": 5, "leaseSeconds": 600},
            "schema": f"lc_bench_{name.replace('-', '_')}",
            "topics": {"items": f"{prefix}.items", "labels": f"{prefix}.labels"},
            "consumerGroup": f"{prefix}.worker",
        }
    )


def provision(dsn: str, bootstrap: str, config: WorkerConfig, partitions: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, config.schema_)
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET_KAFKA})
    topics = [config.topics.items, config.topics.labels]
    futures = admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    for future in futures.values():
        future.result(30)


def drop(dsn: str, bootstrap: str, config: WorkerConfig) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET_KAFKA})
    for future in admin.delete_topics([config.topics.items, config.topics.labels]).values():
        future.result(30)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(config.schema_)))


def produce_items(bootstrap: str, config: WorkerConfig, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, **QUIET_KAFKA})
    for n in range(count):
        item_id = f"item-{n:07d}"
        payload = {
            "prompt": f"Prompt {n}: which answer explains the tides better?",
            "responses": [
                {"id": "a", "text": "The Moon's gravity pulls the oceans, with help from the Sun."},
                {"id": "b", "text": "Wind pushes the water back and forth every day."},
            ],
        }
        message = {"id": item_id, "payload": payload, "priority": n % 10}
        producer.produce(config.topics.items, key=item_id.encode(), value=json.dumps(message))
        if n % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("items were not all delivered to Kafka")


def count_rows(dsn: str, schema: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
        ).fetchone()
    return int(row[0]) if row else 0


# --- the worker -----------------------------------------------------------------------------


def start_worker(
    args: argparse.Namespace,
    config: WorkerConfig,
    dsn: str,
    bootstrap: str,
    tokens: dict[str, str],
    port: int,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        ENV_CAMPAIGN: config.model_dump_json(by_alias=True),
        ENV_POSTGRES_DSN: dsn,
        ENV_KAFKA_BOOTSTRAP: bootstrap,
        ENV_HOST: "127.0.0.1",
        ENV_PORT: str(port),
        ENV_THREADS: str(args.threads),
        ENV_RESPONSE_VALIDATION: args.response_validation,
        **{f"{ENV_TOKEN_PREFIX}{labeler}": token for labeler, token in tokens.items()},
    }
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"{config.name}-worker.log"
    log(f"worker log: {log_path}")
    return subprocess.Popen(
        [sys.executable, "-m", "labelops.cli", "worker"],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )


def wait_ready(port: int, worker: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}; see its log")
        try:
            status, _ = asyncio.run(one_request(port, "GET", "/readyz", None))
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the worker did not become ready")


def wait_ingested(port: int, tokens: dict[str, str], items: int, started: float) -> dict[str, Any]:
    token = next(iter(tokens.values()))
    while True:
        _, body = asyncio.run(one_request(port, "GET", "/v1/progress", token))
        total = json.loads(body)["itemsTotal"]
        if total >= items:
            seconds = time.monotonic() - started
            return {
                "items": total,
                "seconds": round(seconds, 2),
                "itemsPerSecond": round(total / seconds),
            }
        time.sleep(0.5)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the client ---------------------------------------------------------------------------


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
    accepted: int = 0
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
    port: int, tokens: dict[str, str], warmup: float, duration: float
) -> Run:
    run = Run()
    started = time.monotonic()
    measure_from = started + warmup
    stop_at = measure_from + duration
    body = json.dumps({"value": {"preferred": "a"}}).encode()

    async def labeler(token: str) -> None:
        connection = await HttpConnection.open(port, token)
        try:
            while (now := time.monotonic()) < stop_at:
                measuring = now >= measure_from
                status, task = await connection.request("POST", "/v1/tasks/claim")
                claimed = time.monotonic()
                if measuring:
                    run.claim_ms.append((claimed - now) * 1000)
                    run.outcomes[f"claim {status}"] += 1
                if status != 200:
                    await asyncio.sleep(0.05)
                    continue
                item = json.loads(task)["id"]  # item-NNNNNNN: nothing to percent-encode
                status, _ = await connection.request("POST", f"/v1/tasks/{item}/labels", body)
                done = time.monotonic()
                # A label counts in the window its submission completed in.
                if measure_from <= done < stop_at:
                    run.submit_ms.append((done - claimed) * 1000)
                    run.outcomes[f"submit {status}"] += 1
                    run.accepted += status == 201
        finally:
            connection.close()

    await asyncio.gather(*(labeler(token) for token in tokens.values()))
    run.wall_seconds = time.monotonic() - started
    return run


async def label_sequentially(port: int, tokens: dict[str, str], rounds: int) -> dict[str, Any]:
    """Latency without queueing: one labeler, so nothing waits for a server thread."""
    connection = await HttpConnection.open(port, next(iter(tokens.values())))
    body = json.dumps({"value": {"preferred": "b"}}).encode()
    claims, submits = [], []
    try:
        for _ in range(rounds):
            began = time.monotonic()
            status, task = await connection.request("POST", "/v1/tasks/claim")
            claimed = time.monotonic()
            assert status == 200, task
            item = json.loads(task)["id"]
            status, receipt = await connection.request("POST", f"/v1/tasks/{item}/labels", body)
            assert status == 201, receipt
            claims.append((claimed - began) * 1000)
            submits.append((time.monotonic() - claimed) * 1000)
    finally:
        connection.close()
    return {"claimLatencyMs": percentiles(claims), "submitLatencyMs": percentiles(submits)}


async def progress_latency(port: int, tokens: dict[str, str], reads: int) -> dict[str, Any]:
    connection = await HttpConnection.open(port, next(iter(tokens.values())))
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


# --- the relay ------------------------------------------------------------------------------


def wait_relayed(
    bootstrap: str, config: WorkerConfig, committed: int, load_ended: float, backlog: int
) -> dict[str, Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **QUIET_KAFKA,
        }
    )
    consumer.subscribe([config.topics.labels])
    seen: set[str] = set()
    messages = 0
    deadline = time.monotonic() + 300
    try:
        while len(seen) < committed and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    messages += 1
                    seen.add(json.loads(message.value() or b"{}")["labelId"])
    finally:
        consumer.close()
    return {
        "committedLabels": committed,
        "relayedDistinct": len(seen),
        "relayedMessages": messages,
        "allRelayed": len(seen) == committed,
        "outboxBacklogWhenLoadStopped": backlog,
        "lastRelayedSecondsAfterLoadStopped": round(time.monotonic() - load_ended, 2),
    }


# --- the machine -----------------------------------------------------------------------------


def machine(dsn: str) -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        settings: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings"
                " WHERE name IN ('fsync', 'synchronous_commit', 'max_connections')"
            ).fetchall()
        )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memoryGiB": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "postgres": row[0] if row else "?",
        "postgresSettings": settings,
        # Client, worker, PostgreSQL and Kafka share these cores, and on a shared machine
        # so does everybody else's work: the load average says how much there was.
        "loadAverageAtStart": [round(x, 2) for x in os.getloadavg()],
    }


if __name__ == "__main__":
    main()
