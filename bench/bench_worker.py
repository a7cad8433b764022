"""Benchmark of a worker (`labelops worker`) over HTTP, with the real PostgreSQL and Kafka.

    LABELOPS_POSTGRES_DSN=... LABELOPS_KAFKA_BOOTSTRAP=... python bench/bench_worker.py
    (without them, the local stack is started, or reused, with devstack)

One campaign with --items pending items, then one run per scenario, each against a freshly
started worker (stopped with SIGTERM afterwards, which must exit 0):
  default         the worker as the pod template starts it (one HTTP process per usable
                  core, see labelops.worker.config); labelers claim, then submit;
  default-next    the same worker; labelers submit with ?next=true, so the receipt carries
                  the next leased task and a label takes one request instead of two;
  1-process       LABELOPS_WORKER_PROCESSES=1: everything in one Python process;
  1-process-next  the same with ?next=true.
(--scenarios picks some, in the order given; --processes overrides the default worker's
process count. The first scenario starts with all --items pending; later ones with what the
earlier ones left: pendingItemsAtStart says how many.)

--baseline DIR (or LABELOPS_BENCH_BASELINE) compares two versions of the worker in the same
run: DIR is another checkout of the repository (say `git worktree add /tmp/base <commit>`),
whose worker runs with PYTHONPATH=DIR/operator, on the same stack, campaign and items. Each
scenario then also runs as "<scenario>@baseline", next to the current version's run in every
round (they take turns going first), so both see the machine alike. `serverComparison`
gives, per scenario, the current version's labels per second and CPU per label over the
baseline's, round by round (each round's pair ran back to back) and as the median of those
ratios.

What each scenario measures, and the JSON holds (the default one's also at the top level):
  oneLabeler a lone labeler claims and labels --sequential times: latency of the service
             itself, with no request waiting for another;
  labeling   --labelers concurrent labelers, each on its own keep-alive connection, loop
             claim -> submit (or submit?next=true) for --duration seconds after --warmup:
             accepted labels per second, claim and submit latency percentiles (client-side,
             so they include the client's own scheduling: client and server share the
             machine's cores);
  cpuSecondsDuringRun  CPU seconds of the worker (all its processes), PostgreSQL (all its
             processes), this client, and the whole machine (everybody's) during the run,
             and the worker's and PostgreSQL's CPU milliseconds per accepted label: unlike
             labels per second, these hardly depend on what else runs on the machine, but
             they do on how fast its cores are at the time (a virtual machine's host is
             shared too), which speedProbeSeconds, a fixed Python loop's CPU time before and
             after each scenario, shows;
  relay      every label committed so far must reach the labels topic: the labels are
             consumed back and de-duplicated by labelId; reported is how long after the load
             stopped the last one arrived, and the outbox backlog when the load stopped;
  progress   GET /v1/progress latency after the run.
Before the first scenario, `ingest`: the items are produced to the items topic and the
worker's ingest consumer takes them in (items per second until all are claimable).

The client is a small asyncio HTTP/1.1 client (one coroutine per labeler, raw keep-alive
sockets, no HTTP library) so that it costs far less CPU than the server it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql

from cputime import (
    machine_busy_seconds,
    own_cpu_seconds,
    postmaster_pid,
    python_speed_probe,
    spent,
    tree_cpu_seconds,
)
from devstack.kafka import client_connection
from devstack.procs import free_port
from httpload import label_concurrently, label_sequentially, one_request, progress_latency
from labelops.api.worker_configmap import (
    ENV_CAMPAIGN,
    ENV_KAFKA_BOOTSTRAP,
    ENV_POSTGRES_DSN,
    ENV_TOKEN_PREFIX,
    WorkerConfig,
)
from labelops.store.migrations import migrate
from labelops.worker.config import (
    ENV_HOST,
    ENV_PORT,
    ENV_PROCESSES,
    ENV_RESPONSE_VALIDATION,
    ENV_THREADS,
)

QUIET_KAFKA = {"log_level": 0}
# name -> (LABELOPS_WORKER_PROCESSES, or None for the worker's default; submit with ?next=true)
SCENARIOS: dict[str, tuple[int | None, bool]] = {
    "default": (None, False),
    "default-next": (None, True),
    "1-process": (1, False),
    "1-process-next": (1, True),
}
HEADLINE = "default"


def main() -> None:
    args = parse_args()
    baseline = baseline_tree(args.baseline)
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
            "workerThreads": args.threads or "the worker's default",
            "rounds": args.rounds,
            "responseValidation": args.response_validation,
            "scenarios": args.scenarios,
            "baseline": baseline_description(baseline),
        },
    }
    provision(dsn, bootstrap, config, args.partitions)
    database = Database(dsn, config.schema_)
    versions: list[Path | None] = [None] if baseline is None else [None, baseline]
    runs: dict[str, list[dict[str, Any]]] = {
        run_name(scenario, version): [] for scenario in args.scenarios for version in versions
    }
    try:
        log(f"producing {args.items} items to {config.topics.items}")
        produce_items(bootstrap, config, args.items)
        # Rounds interleave the scenarios, so a stretch of time when the (shared, virtual)
        # machine runs slow weighs on all of them alike.
        for round_number in range(1, args.rounds + 1):
            for scenario in args.scenarios:
                processes, with_next = SCENARIOS[scenario]
                if processes is None:
                    processes = args.processes
                # The versions take turns going first, so neither always runs on what the
                # other left (fewer pending items, warmer caches).
                order = versions if round_number % 2 else versions[::-1]
                for version in order:
                    name = run_name(scenario, version)
                    log(
                        f"round {round_number}/{args.rounds}, scenario {name}: "
                        f"worker processes {processes or 'default'}"
                    )
                    runs[name].append(
                        run_scenario(
                            args,
                            config,
                            dsn,
                            bootstrap,
                            tokens,
                            database,
                            processes,
                            with_next,
                            results,
                            version,
                        )
                    )
    finally:
        if not args.keep:
            drop(dsn, bootstrap, config)
    scenarios = {scenario: over_rounds(done) for scenario, done in runs.items() if done}
    results["scenarios"] = scenarios
    if baseline is not None:
        results["serverComparison"] = {
            scenario: compare(runs[scenario], runs[run_name(scenario, baseline)])
            for scenario in args.scenarios
        }
    # bench/run.py reads the headline figures at the top level.
    headline = scenarios.get(HEADLINE) or next(iter(scenarios.values()), {})
    for key in ("oneLabeler", "labeling", "cpuSecondsDuringRun", "relay", "progress"):
        if key in headline:
            results[key] = headline[key]
    results["workerExitCode"] = max(s.get("workerExitCode", 0) for s in scenarios.values())
    results["machine"]["loadAverageAtEnd"] = [round(x, 2) for x in os.getloadavg()]
    out = json.dumps(results, indent=2)
    print(out)
    if args.out:
        Path(args.out).write_text(out + "\n")


def run_name(scenario: str, version: Path | None) -> str:
    return scenario if version is None else f"{scenario}@baseline"


def baseline_tree(given: str | None) -> Path | None:
    if not given:
        return None
    tree = Path(given).resolve()
    if not (tree / "operator" / "labelops" / "worker").is_dir():
        raise SystemExit(f"--baseline {given}: no operator/labelops/worker there")
    return tree


def baseline_description(tree: Path | None) -> dict[str, str] | None:
    if tree is None:
        return None
    commit = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {"tree": str(tree), "commit": commit or "unknown"}


def compare(current: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> dict[str, Any]:
    """The current version over the baseline, round by round (each pair ran back to back)
    and as the median of the rounds' ratios."""

    def ratios(figure: Callable[[dict[str, Any]], float | None]) -> list[float]:
        found = []
        for ours, theirs in zip(current, baseline, strict=True):
            a, b = figure(ours), figure(theirs)
            if a is not None and b:
                found.append(round(a / b, 3))
        return found

    def rate(run: dict[str, Any]) -> float | None:
        value = run["labeling"]["labelsPerSecond"]
        return float(value) if value is not None else None

    def cpu(key: str) -> Callable[[dict[str, Any]], float | None]:
        return lambda run: run["cpuSecondsDuringRun"].get(key)

    figures = {
        "labelsPerSecond": ratios(rate),
        "workerMsPerLabel": ratios(cpu("workerMsPerLabel")),
        "postgresMsPerLabel": ratios(cpu("postgresMsPerLabel")),
    }
    return {
        "currentOverBaseline": {
            name: {"median": statistics.median(values), "rounds": values}
            for name, values in figures.items()
            if values
        },
        "labelsPerSecond": {
            "current": [rate(run) for run in current],
            "baseline": [rate(run) for run in baseline],
        },
        "workerMsPerLabel": {
            "current": [cpu("workerMsPerLabel")(run) for run in current],
            "baseline": [cpu("workerMsPerLabel")(run) for run in baseline],
        },
    }


def over_rounds(done: list[dict[str, Any]]) -> dict[str, Any]:
    """A scenario's figures: those of its median round (by labels per second), with every
    round's headline figures and the machine's speed at the time beside them."""
    ranked = sorted(done, key=lambda run: run["labeling"]["labelsPerSecond"])
    median = dict(ranked[(len(ranked) - 1) // 2])
    rates = [run["labeling"]["labelsPerSecond"] for run in done]
    median["labelsPerSecondOverRounds"] = {
        "median": median["labeling"]["labelsPerSecond"],
        "min": min(rates),
        "max": max(rates),
        "rounds": len(done),
    }
    median["rounds"] = [
        {
            "labelsPerSecond": run["labeling"]["labelsPerSecond"],
            "workerMsPerLabel": run["cpuSecondsDuringRun"]["workerMsPerLabel"],
            "postgresMsPerLabel": run["cpuSecondsDuringRun"]["postgresMsPerLabel"],
            "speedProbeSeconds": [run["speedProbeSecondsAtStart"], run["speedProbeSecondsAtEnd"]],
            "allRelayed": run["relay"].get("allRelayed"),
            "workerExitCode": run["workerExitCode"],
        }
        for run in done
    ]
    median["allRoundsRelayed"] = all(run["relay"].get("allRelayed") for run in done)
    median["workerExitCode"] = max(run["workerExitCode"] for run in done)
    return median


def run_scenario(
    args: argparse.Namespace,
    config: WorkerConfig,
    dsn: str,
    bootstrap: str,
    tokens: dict[str, str],
    database: Database,
    processes: int | None,
    with_next: bool,
    results: dict[str, Any],
    version: Path | None = None,
) -> dict[str, Any]:
    """One worker (of the baseline tree `version`, or this one), started for this scenario
    and stopped (SIGTERM) after it."""
    token = next(iter(tokens.values()))
    port = free_port()
    out: dict[str, Any] = {
        "loadAverageAtStart": [round(x, 2) for x in os.getloadavg()],
        "speedProbeSecondsAtStart": python_speed_probe(),
    }
    worker = start_worker(args, config, dsn, bootstrap, tokens, port, processes, version)
    try:
        started = time.monotonic()
        wait_ready(port, worker)
        if "ingest" not in results:  # the first worker takes the items in
            results["ingest"] = wait_ingested(port, token, args.items, started)
        out["workerProcesses"] = http_processes(worker.pid)
        out["submitWithNext"] = with_next
        out["pendingItemsAtStart"] = database.pending_items()
        log(f"one labeler, {args.sequential} claims and labels one after the other")
        out["oneLabeler"] = asyncio.run(label_sequentially(port, token, args.sequential))
        log(f"{args.labelers} labelers for {args.warmup}s warmup + {args.duration}s")
        cpu = CpuMeter(worker.pid, database.postmaster)
        run = asyncio.run(label_concurrently(port, tokens, args.warmup, args.duration, with_next))
        load_ended = time.monotonic()
        out["cpuSecondsDuringRun"] = cpu.report(run.wall_seconds, run.accepted_all)
        backlog = database.count("outbox")
        out["labeling"] = run.summary(args.duration)
        log("waiting for the relay to publish every accepted label")
        out["relay"] = wait_relayed(
            bootstrap, config, database.count("labels"), load_ended, backlog
        )
        out["progress"] = asyncio.run(progress_latency(port, token, args.progress_reads))
    finally:
        worker.send_signal(signal.SIGTERM)
        out["workerExitCode"] = worker.wait(60)
    out["outboxAfterStop"] = database.count("outbox")
    out["loadAverageAtEnd"] = [round(x, 2) for x in os.getloadavg()]
    out["speedProbeSecondsAtEnd"] = python_speed_probe()
    return out


class CpuMeter:
    """CPU spent from now until report(): the worker's processes, PostgreSQL's, this client,
    and the whole machine (everybody's work, for context)."""

    def __init__(self, worker: int, postmaster: int | None) -> None:
        self._worker_pid, self._postmaster = worker, postmaster
        self._worker = tree_cpu_seconds(worker)
        self._postgres = tree_cpu_seconds(postmaster) if postmaster else {}
        self._client = own_cpu_seconds()
        self._machine = machine_busy_seconds()

    def report(self, wall_seconds: float, labels: int) -> dict[str, Any]:
        worker = spent(self._worker, tree_cpu_seconds(self._worker_pid))
        postgres = (
            spent(self._postgres, tree_cpu_seconds(self._postmaster)) if self._postmaster else None
        )
        report: dict[str, Any] = {
            "worker": round(worker, 2),
            "postgres": None if postgres is None else round(postgres, 2),
            "benchClient": round(own_cpu_seconds() - self._client, 2),
            "machineAllProcesses": round(machine_busy_seconds() - self._machine, 2),
            "wallSeconds": round(wall_seconds, 2),
            "labelsAccepted": labels,
        }
        if labels:
            report["workerMsPerLabel"] = round(1000 * worker / labels, 3)
            if postgres is not None:
                report["postgresMsPerLabel"] = round(1000 * postgres / labels, 3)
        return report


class Database:
    def __init__(self, dsn: str, schema: str) -> None:
        self._dsn, self._schema = dsn, schema
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        self.postmaster = postmaster_pid(row[0]) if row else None

    def count(self, table: str) -> int:
        return self._count(sql.SQL("SELECT count(*) FROM {}"), table)

    def pending_items(self) -> int:
        return self._count(sql.SQL("SELECT count(*) FROM {} WHERE completed_at IS NULL"), "items")

    def _count(self, statement: sql.SQL, table: str) -> int:
        with psycopg.connect(self._dsn) as conn:
            row = conn.execute(statement.format(sql.Identifier(self._schema, table))).fetchone()
        return int(row[0]) if row else 0


def http_processes(worker: int) -> int:
    """How many processes serve HTTP: the worker itself, or the processes it started."""
    return max(1, len(tree_cpu_seconds(worker)) - 1)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--labelers", type=int, default=32)
    p.add_argument("--items", type=int, default=100_000, help="pending items before the run")
    # Enough label slots for every round: 12 runs at 2,000 labels/s for 25 s take 600,000.
    p.add_argument("--labels-per-item", type=int, default=7)
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    p.add_argument("--rounds", type=int, default=3, help="runs of each scenario, interleaved")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="LABELOPS_WORKER_THREADS (database threads of a replica); the worker's default",
    )
    p.add_argument(
        "--processes", type=int, default=None, help="HTTP processes of the default scenarios"
    )
    p.add_argument(
        "--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS), metavar="S"
    )
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--response-validation", choices=["off", "log", "strict"], default="log")
    p.add_argument(
        "--sequential", type=int, default=500, help="claim+label rounds of the lone labeler"
    )
    p.add_argument("--progress-reads", type=int, default=500)
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--keep", action="store_true", help="keep the schema and topics")
    p.add_argument(
        "--baseline",
        default=os.environ.get("LABELOPS_BENCH_BASELINE"),
        help="another checkout whose worker runs each scenario too, for comparison",
    )
    return p.parse_args()


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- the stack and the campaign -----------------------------------------------------------


def stack_settings() -> tuple[str, str]:
    if ENV_POSTGRES_DSN in os.environ and ENV_KAFKA_BOOTSTRAP in os.environ:
        return os.environ[ENV_POSTGRES_DSN], os.environ[ENV_KAFKA_BOOTSTRAP]
    from devstack import stack

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
            # Every run ends with each labeler holding the task it claimed last; over the
            # rounds those leases add up (they lapse after leaseSeconds).
            "quotas": {
                "perLabelerDaily": 100_000,
                "maxLeasesPerLabeler": 5
                + 2 * len(SCENARIOS) * args.rounds * (2 if args.baseline else 1),
                "leaseSeconds": 600,
            },
            "schema": f"lc_bench_{name.replace('-', '_')}",
            "topics": {"items": f"{prefix}.items", "labels": f"{prefix}.labels"},
            "consumerGroup": f"{prefix}.worker",
        }
    )


def provision(dsn: str, bootstrap: str, config: WorkerConfig, partitions: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, config.schema_)
    admin = AdminClient(client_connection(bootstrap).client_config(QUIET_KAFKA))
    topics = [config.topics.items, config.topics.labels]
    futures = admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    for future in futures.values():
        future.result(30)


def drop(dsn: str, bootstrap: str, config: WorkerConfig) -> None:
    admin = AdminClient(client_connection(bootstrap).client_config(QUIET_KAFKA))
    for future in admin.delete_topics([config.topics.items, config.topics.labels]).values():
        future.result(30)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(config.schema_)))


def produce_items(bootstrap: str, config: WorkerConfig, count: int) -> None:
    producer = Producer(
        client_connection(bootstrap).client_config({"linger.ms": 20, **QUIET_KAFKA})
    )
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


# --- the worker -----------------------------------------------------------------------------


def start_worker(
    args: argparse.Namespace,
    config: WorkerConfig,
    dsn: str,
    bootstrap: str,
    tokens: dict[str, str],
    port: int,
    processes: int | None,
    version: Path | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        # The baseline's config model may not know fields added since: it gets only what
        # differs from the defaults (what the bench sets).
        ENV_CAMPAIGN: config.model_dump_json(by_alias=True, exclude_defaults=version is not None),
        ENV_POSTGRES_DSN: dsn,
        ENV_KAFKA_BOOTSTRAP: bootstrap,
        ENV_HOST: "127.0.0.1",
        ENV_PORT: str(port),
        ENV_RESPONSE_VALIDATION: args.response_validation,
        **{f"{ENV_TOKEN_PREFIX}{labeler}": token for labeler, token in tokens.items()},
    }
    env.pop(ENV_PROCESSES, None)
    env.pop(ENV_THREADS, None)
    if args.threads is not None:
        env[ENV_THREADS] = str(args.threads)
    if processes is not None:
        env[ENV_PROCESSES] = str(processes)
    if version is not None:
        env["PYTHONPATH"] = str(version / "operator")
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"{config.name}-{port}-worker.log"
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


def wait_ingested(port: int, token: str, items: int, started: float) -> dict[str, Any]:
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


# --- the relay ------------------------------------------------------------------------------


def wait_relayed(
    bootstrap: str, config: WorkerConfig, committed: int, load_ended: float, backlog: int
) -> dict[str, Any]:
    consumer = Consumer(
        client_connection(bootstrap).client_config(
            {
                "group.id": f"bench-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                **QUIET_KAFKA,
            }
        )
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
                " WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes',"
                "                'max_connections')"
            ).fetchall()
        )
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
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
