"""Benchmark of a LabelerPool's router (`labelops router`) in front of real workers, with the
real PostgreSQL and Kafka.

    LABELOPS_POSTGRES_DSN=... LABELOPS_KAFKA_BOOTSTRAP=... python bench/bench_router.py
    (without them, the local stack is started, or reused, with devstack)

throughput  One campaign, one `labelops worker` (as the pod template starts it) and one
            router in front of it, both started once (and, with --baseline-router-source,
            a second router running another commit's code, "routedBaseline", to compare
            the router's CPU before and after in the same run). The labelers are
            tests/labelers_sim.py's, the same client every way: one keep-alive connection
            each, and they do what the labeling page does (worker/static/app.js): every
            submit asks ?next=true and carries an Idempotency-Key, so a label is one
            request once the first task is claimed. Straight to the worker they use its
            own tokens; through the router, pool tokens (the router forwards with the
            campaign's service token and Labelops-Labeler). In each round every mode runs
            --warmup + --duration seconds, the modes taking turns going first, twice;
            before each run the campaign's tables are vacuumed and a checkpoint taken
            (settle(): no run pays for the dead rows or dirty pages of the one before):
            saturated  --labelers labelers with no think time (a closed loop): the
                       throughput at saturation; the routed labels per second over the
                       direct ones, round by round and as the median (target >= 0.8).
                       Their latencies are queueing (every labeler waits for a busy
                       worker), reported as such.
            paced      the same labelers looking at each task --think-min..--think-max
                       seconds (uniform) before submitting it, so the offered load is well
                       below capacity: the latency a labeler waits for its next task (the
                       submit?next=true, or the claim, that brought it), p50/p99 routed vs
                       direct, the difference being the router's (target: routed p99
                       < 20 ms).
            Reported per mode and run: accepted labels per second, the next task's, the
            claims' and the submits' latency percentiles (client side), CPU milliseconds
            per label of the worker, the router(s) and PostgreSQL (all of the run's labels,
            warmup included, over the CPU the processes used meanwhile), PostgreSQL
            commits per label (the worker's group-commit batches: fewer is bigger) and the load
            average. oneLabeler: a lone labeler's claim and submit latency each way (claim
            then plain submit), nothing queueing; another labeler each way, since a
            claim passes over the items its labeler already labeled.
fairShare   A pool of three campaigns of weights 1:2:1 (a worker each, one HTTP process),
            the router, --labelers labelers. The first campaign has few items, so it runs
            out; labeling goes on --after seconds past that. The shares are counted from the
            labels stored in each campaign's schema, per --window seconds: each campaign's
            actual share minus its nominal share among the campaigns that still had work
            (percentage points), and the largest such error while all three had work and
            after the first ran out (windows in which it ran out are left out of those).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator"), str(REPO / "bench"), str(REPO / "tests")]

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from bench_worker import (  # noqa: E402
    drop,
    machine,
    produce_items,
    provision,
    stack_settings,
    wait_ingested,
    wait_ready,
)
from cputime import postmaster_pid, spent, tree_cpu_seconds  # noqa: E402
from devstack.procs import free_port  # noqa: E402
from labelers_sim import (  # noqa: E402
    CrowdRun,
    counts_between,
    label_until,
    percentiles,
    share_errors_over_time,
    shares_of,
    stored_labels,
)
from labelops.api.pool_router import (  # noqa: E402
    ENV_LABELER_DIGESTS,
    ENV_ROUTE_TOKEN_PREFIX,
    ENV_ROUTER_CONFIG,
    ROUTER_SERVICE,
)
from labelops.api.worker_configmap import (  # noqa: E402
    ENV_CAMPAIGN,
    ENV_KAFKA_BOOTSTRAP,
    ENV_POSTGRES_DSN,
    ENV_TOKEN_PREFIX,
    WorkerConfig,
)
from labelops.store.labeler_tokens import replace_service_digests, token_digest  # noqa: E402
from labelops.worker.config import (  # noqa: E402
    ENV_HOST,
    ENV_PORT,
    ENV_PROCESSES,
    ENV_RESPONSE_VALIDATION,
)

TARGET_RATIO = 0.8
TARGET_CLAIM_P99_MS = 20.0
FAIR_WEIGHTS = {"a": 1, "b": 2, "c": 1}


def log(message: str) -> None:
    print(f"[bench-router] {message}", file=sys.stderr, flush=True)


# --- processes ------------------------------------------------------------------------------


class Proc:
    """A `labelops worker` or `labelops router` child process on a free loopback port."""

    def __init__(
        self, kind: str, env: Mapping[str, str], name: str, unset: tuple[str, ...] = ()
    ) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"{name}-{self.port}.log"
        ports = (
            {ENV_HOST: "127.0.0.1", ENV_PORT: str(self.port)}
            if kind == "worker"
            else {"LABELOPS_ROUTER_HOST": "127.0.0.1", "LABELOPS_ROUTER_PORT": str(self.port)}
        )
        log(f"{kind} {name} on port {self.port}, log {self.log_path}")
        full = {k: v for k, v in os.environ.items() if k not in unset}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labelops.cli", kind],
            env={**full, **env, **ports},
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self) -> None:
        wait_ready(self.port, self.process)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


def worker_config(name: str, items: int, labels_per_item: int, leases: int) -> WorkerConfig:
    prefix = f"labelops.bench.{name}"
    return WorkerConfig.model_validate(
        {
            "namespace": "bench",
            "name": name,
            "task": {"type": "pairwise", "instructions": "Pick the better response."},
            "target": {"items": items, "labelsPerItem": labels_per_item},
            # Each run ends with every labeler holding the task it claimed last.
            "quotas": {
                "perLabelerDaily": 100_000,
                "maxLeasesPerLabeler": leases,
                "leaseSeconds": 600,
            },
            "schema": f"lc_bench_{name.replace('-', '_')}",
            "topics": {"items": f"{prefix}.items", "labels": f"{prefix}.labels"},
            "consumerGroup": f"{prefix}.worker",
        }
    )


def start_worker(
    dsn: str,
    bootstrap: str,
    config: WorkerConfig,
    tokens: Mapping[str, str],
    processes: int | None,
) -> Proc:
    env = {
        ENV_CAMPAIGN: config.model_dump_json(by_alias=True),
        ENV_POSTGRES_DSN: dsn,
        ENV_KAFKA_BOOTSTRAP: bootstrap,
        ENV_RESPONSE_VALIDATION: "log",
        **{f"{ENV_TOKEN_PREFIX}{labeler}": token for labeler, token in tokens.items()},
    }
    if processes is not None:
        env[ENV_PROCESSES] = str(processes)
    # processes None: the worker's default, not whatever this shell's environment says.
    return Proc("worker", env, config.name, unset=(ENV_PROCESSES,))


def know_router(dsn: str, config: WorkerConfig, service_token: str) -> None:
    """The campaign's schema knows the router by its service token's digest, as the
    operator writes it for a pool's member campaigns."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        replace_service_digests(
            conn, config.schema_, {ROUTER_SERVICE: token_digest(service_token.encode())}
        )


def start_router(
    campaigns: list[tuple[WorkerConfig, Proc, str, int]],
    pool_tokens: Mapping[str, str],
    capacity: int,
    source: Path | None = None,
) -> Proc:
    """campaigns: (config, its worker, the router's service token for it, weight).
    source: an operator/ folder whose code runs instead of this checkout's."""
    config = {
        "pool": "bench",
        "namespace": "bench",
        "identity": {"tokens": {"secretRef": {"name": "bench-pool-tokens"}}},
        "capacity": {"maxLeasesPerLabeler": capacity},
        "campaigns": [
            {"name": c.name, "url": worker.url, "weight": weight}
            for c, worker, _, weight in campaigns
        ],
    }
    env = {
        ENV_ROUTER_CONFIG: json.dumps(config),
        ENV_LABELER_DIGESTS: json.dumps(
            {who: token_digest(t.encode()).hex() for who, t in pool_tokens.items()}
        ),
        **{ENV_ROUTE_TOKEN_PREFIX + c.name: token for c, _, token, _ in campaigns},
    }
    if source is not None:
        env["PYTHONPATH"] = str(source.resolve())
    return Proc("router", env, "router" if source is None else "router-baseline")


def tokens_for(labelers: int, kind: str) -> dict[str, str]:
    return {f"labeler{n:02d}": f"bench-{kind}-{n:02d}-{uuid.uuid4().hex}" for n in range(labelers)}


# --- throughput -------------------------------------------------------------------------------


class CpuOf:
    """CPU seconds of process trees from now until spent()."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self._pids = {k: p for k, p in pids.items() if p}
        self._at = {k: tree_cpu_seconds(p) for k, p in self._pids.items()}

    def spent(self) -> dict[str, float]:
        return {k: spent(self._at[k], tree_cpu_seconds(p)) for k, p in self._pids.items()}


def timed_run(
    port: int,
    tokens: Mapping[str, str],
    campaign: str,
    warmup: float,
    duration: float,
    cpu_of: Mapping[str, int | None],
    think: Callable[[], float] | None = None,
    commits: Callable[[], int] | None = None,
) -> dict[str, Any]:
    """commits: PostgreSQL's count of committed transactions so far (the worker's group
    commit puts the labels that arrive during one commit into the next: fewer commits per
    label, bigger batches)."""
    started = time.monotonic()
    measure_from, stop_at = started + warmup, started + warmup + duration
    cpu = CpuOf(cpu_of)
    commits_before = commits() if commits is not None else 0
    run = asyncio.run(
        label_until(
            port,
            tokens,
            lambda: time.monotonic() >= stop_at,
            campaign=campaign,
            measure_from=measure_from,
            with_next=True,
            idempotency=True,
            think=think,
        )
    )
    used = cpu.spent()
    labels_all = len(run.labels)
    committed = commits() - commits_before if commits is not None else None
    return {
        "acceptedLabels": run.accepted,
        "labelsPerSecond": round(run.accepted / duration, 1),
        "nextTaskLatencyMs": percentiles(run.task_ms),
        "claimLatencyMs": percentiles(run.claim_ms),
        "submitLatencyMs": percentiles(run.submit_ms),
        "responses": dict(run.outcomes),
        "unexpected": run.errors[:5],
        "cpuMsPerLabel": {
            k: round(1000 * seconds / labels_all, 3) if labels_all else None
            for k, seconds in used.items()
        },
        "postgresCommitsPerLabel": (
            round(committed / labels_all, 3) if committed is not None and labels_all else None
        ),
        "loadAverageAtEnd": [round(x, 2) for x in os.getloadavg()],
    }


def commit_counter(dsn: str) -> Callable[[], int]:
    """The database's committed transactions so far (pg_stat_database.xact_commit, which
    counts this query's own transaction too, and which backends report about once a
    second: a run's figure is good to a second or so of its commits)."""

    def count() -> int:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        return int(row[0]) if row else 0

    return count


async def sequential(port: int, token: str, rounds: int) -> dict[str, Any]:
    """A lone labeler: claim, label, rounds times; latency with nothing queueing."""
    run = CrowdRun()

    def enough() -> bool:
        return len(run.labels) >= rounds

    await label_until(port, {"solo": token}, enough, run=run)
    return {
        "labels": len(run.labels),
        "claimLatencyMs": percentiles(run.claim_ms),
        "submitLatencyMs": percentiles(run.submit_ms),
    }


def median_of(runs: list[dict[str, Any]], key: str, field: str) -> float | None:
    values = [r[key][field] for r in runs if r[key].get(field) is not None]
    return statistics.median(values) if values else None


def summary_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over a mode's rounds."""
    return {
        "labelsPerSecondMedian": statistics.median(r["labelsPerSecond"] for r in runs),
        "nextTaskP50MsMedian": median_of(runs, "nextTaskLatencyMs", "p50"),
        "nextTaskP99MsMedian": median_of(runs, "nextTaskLatencyMs", "p99"),
        "postgresCommitsPerLabelMedian": statistics.median(
            r["postgresCommitsPerLabel"] or 0.0 for r in runs
        ),
        "cpuMsPerLabelMedian": {
            k: statistics.median(r["cpuMsPerLabel"][k] or 0.0 for r in runs)
            for k in runs[0]["cpuMsPerLabel"]
        },
    }


def ratios_of(direct: list[dict[str, Any]], routed: list[dict[str, Any]]) -> list[float | None]:
    return [
        round(r["labelsPerSecond"] / d["labelsPerSecond"], 3) if d["labelsPerSecond"] else None
        for d, r in zip(direct, routed, strict=True)
    ]


def throughput(args: argparse.Namespace, dsn: str, bootstrap: str) -> dict[str, Any]:
    name = f"rbench-{uuid.uuid4().hex[:6]}"
    modes = ["direct", "routed"] + (["routedBaseline"] if args.baseline_router_source else [])
    # Each run ends with every labeler holding the task it was handed last.
    leases = 5 + 2 * args.rounds * len(modes) + 2
    config = worker_config(name, args.items, args.labels_per_item, leases)
    direct_tokens = tokens_for(args.labelers, "direct")
    # oneLabeler's lone labeler, one of the labelers, another one each mode: a claim passes
    # over the items its labeler labeled that still have free slots, so a mode run after
    # another with the same labeler would pay for the earlier mode's labels.
    solos = dict(zip(modes, direct_tokens, strict=False))
    pool_tokens = tokens_for(args.labelers, "pool")
    service_token = f"bench-router-{uuid.uuid4().hex}"
    provision(dsn, bootstrap, config, args.partitions)
    out: dict[str, Any] = {"campaign": name, "labelers": args.labelers}
    procs: dict[str, Proc] = {}
    try:
        know_router(dsn, config, service_token)
        log(f"producing {args.items} items")
        produce_items(bootstrap, config, args.items)
        started = time.monotonic()
        worker = procs["worker"] = start_worker(dsn, bootstrap, config, direct_tokens, None)
        worker.wait_ready()
        out["ingest"] = wait_ingested(
            worker.port, direct_tokens[solos["direct"]], args.items, started
        )
        member = [(config, worker, service_token, 1)]
        procs["router"] = start_router(member, pool_tokens, leases)
        if args.baseline_router_source:
            out["baselineRouterSource"] = str(args.baseline_router_source)
            procs["routerBaseline"] = start_router(
                member, pool_tokens, leases, source=args.baseline_router_source
            )
        for proc in procs.values():
            proc.wait_ready()
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        postmaster = postmaster_pid(row[0]) if row else None
        cpu_of: dict[str, int | None] = {k: p.pid for k, p in procs.items()}
        cpu_of["postgres"] = postmaster
        ports = {"direct": worker.port, "routed": procs["router"].port}
        if "routerBaseline" in procs:
            ports["routedBaseline"] = procs["routerBaseline"].port
        tokens = {mode: (direct_tokens if mode == "direct" else pool_tokens) for mode in modes}
        out["oneLabeler"] = {
            mode: {
                "labeler": solos[mode],
                **asyncio.run(sequential(ports[mode], tokens[mode][solos[mode]], args.sequential)),
            }
            for mode in modes
        }
        pace = random.Random(args.seed)

        def think() -> float:
            return pace.uniform(args.think_min, args.think_max)

        paces: dict[str, Callable[[], float] | None] = {"saturated": None, "paced": think}
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            section: {mode: [] for mode in modes} for section in paces
        }
        for number in range(1, args.rounds + 1):
            shift = (number - 1) % len(modes)
            order = modes[shift:] + modes[:shift]
            for section, pacing in paces.items():
                for mode in order:
                    settled = settle(dsn, config.schema_)
                    log(
                        f"round {number}/{args.rounds}: {section}, {mode}, load {loadavg()} "
                        f"(vacuum and checkpoint {settled} s)"
                    )
                    run = timed_run(
                        ports[mode],
                        tokens[mode],
                        name,
                        args.warmup,
                        args.duration,
                        cpu_of,
                        pacing,
                        commit_counter(dsn),
                    )
                    runs[section][mode].append({**run, "settleSeconds": settled})
        saturated, paced = runs["saturated"], runs["paced"]
        ratios = ratios_of(saturated["direct"], saturated["routed"])
        known = [r for r in ratios if r is not None]
        median_ratio = statistics.median(known) if known else None
        out["saturated"] = {
            "about": "closed loop, no think time: throughput at saturation; its latencies "
            "are queueing behind a busy worker",
            "rounds": saturated,
            **{mode: summary_of(saturated[mode]) for mode in modes},
            "routedOverDirect": {
                "labelsPerSecondRatioPerRound": ratios,
                "median": median_ratio,
                "target": TARGET_RATIO,
                "met": median_ratio is not None and median_ratio >= TARGET_RATIO,
            },
        }
        if "routedBaseline" in modes:
            base = ratios_of(saturated["direct"], saturated["routedBaseline"])
            known = [r for r in base if r is not None]
            out["saturated"]["routedBaselineOverDirect"] = {
                "labelsPerSecondRatioPerRound": base,
                "median": statistics.median(known) if known else None,
            }
        # Where bench/run.py's summary reads the two targets.
        out["routedOverDirect"] = out["saturated"]["routedOverDirect"]
        routed_p99 = median_of(paced["routed"], "nextTaskLatencyMs", "p99")
        out["paced"] = {
            "about": f"think time uniform {args.think_min}-{args.think_max} s per task: "
            "offered load below capacity; the next task's latency is the router's added "
            "latency over direct",
            "rounds": paced,
            **{mode: summary_of(paced[mode]) for mode in modes},
            "routedNextTaskP99Ms": {
                "medianOverRounds": routed_p99,
                "target": TARGET_CLAIM_P99_MS,
                "met": routed_p99 is not None and routed_p99 < TARGET_CLAIM_P99_MS,
            },
        }
        out["routedClaimP99Ms"] = out["paced"]["routedNextTaskP99Ms"]
    finally:
        for key, proc in reversed(procs.items()):
            out.setdefault("exitCodes", {})[key] = proc.stop()
        if not args.keep:
            drop(dsn, bootstrap, config)
    return out


def settle(dsn: str, schema: str) -> float:
    """Before each timed run: the campaign's tables vacuumed and analyzed, then a
    checkpoint, so that no run pays for what an earlier one left behind (autovacuum of the
    ingested items or of the previous run's dead rows, a checkpoint writing its dirty
    pages) in its labels per second and in PostgreSQL's CPU per label. Seconds taken."""
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)
        ).fetchall()
        for (table,) in rows:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(schema, table)))
        conn.execute("CHECKPOINT")
    return round(time.monotonic() - started, 2)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- fair share ---------------------------------------------------------------------------------


def fair_share(args: argparse.Namespace, dsn: str, bootstrap: str) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:6]
    items = {"a": args.fair_items_a, "b": args.fair_items, "c": args.fair_items}
    configs = {key: worker_config(f"fs{key}-{suffix}", items[key], 1, 10) for key in FAIR_WEIGHTS}
    worker_tokens = {"probe": f"bench-probe-{uuid.uuid4().hex}"}
    pool_tokens = tokens_for(args.labelers, "pool")
    service_tokens = {key: f"bench-router-{key}-{uuid.uuid4().hex}" for key in FAIR_WEIGHTS}
    workers: dict[str, Proc] = {}
    router: Proc | None = None
    out: dict[str, Any] = {
        "weights": {configs[k].name: w for k, w in FAIR_WEIGHTS.items()},
        "items": {configs[k].name: n for k, n in items.items()},
        "labelers": args.labelers,
        "windowSeconds": args.window,
    }
    for config in configs.values():
        provision(dsn, bootstrap, config, args.partitions)
    try:
        for key, config in configs.items():
            know_router(dsn, config, service_tokens[key])
            log(f"producing {items[key]} items for {config.name}")
            produce_items(bootstrap, config, items[key])
        started = time.monotonic()
        for key, config in configs.items():
            workers[key] = start_worker(dsn, bootstrap, config, worker_tokens, 1)
        for key, worker in workers.items():
            worker.wait_ready()
            wait_ingested(worker.port, worker_tokens["probe"], items[key], started)
        router = start_router(
            [(configs[k], workers[k], service_tokens[k], w) for k, w in FAIR_WEIGHTS.items()],
            pool_tokens,
            5,
        )
        router.wait_ready()
        first = configs["a"]
        exhausted_at: list[float] = []

        def done() -> bool:
            now = time.monotonic()
            if not exhausted_at and labels_of(dsn, first) >= items["a"]:
                exhausted_at.append(now)
                log(f"{first.name} ran out; labeling {args.after} s more")
            limit = exhausted_at[0] + args.after if exhausted_at else started + args.max_seconds
            return now >= limit

        log(f"{args.labelers} labelers through the router")
        started = time.monotonic()  # --max-seconds counts from here, not from the ingest
        run = asyncio.run(label_until(router.port, pool_tokens, throttled(done, 0.25)))
        out["labelsAccepted"] = len(run.labels)
        out["responses"] = dict(run.outcomes)
        out["unexpected"] = run.errors[:5]
        labels = stored_labels(dsn, {c.name: c.schema_ for c in configs.values()})
        names = [c.name for c in configs.values()]
        weights = {configs[k].name: w for k, w in FAIR_WEIGHTS.items()}
        last = {
            name: max((x.at for x in labels if x.campaign == name), default=0.0) for name in names
        }
        # The ones that never ran out have work to the end.
        end = labels[-1].at if labels else 0.0
        for name in names:
            if name != first.name:
                last[name] = max(last[name], end + args.window)
        windows = share_errors_over_time(labels, weights, last, args.window)
        out["windows"] = windows
        out["summary"] = summarize(windows, labels, last[first.name], names)
    finally:
        for proc in [router, *workers.values()]:
            if proc is not None:
                out.setdefault("exitCodes", {})[f"{proc.kind}:{proc.port}"] = proc.stop()
        if not args.keep:
            for config in configs.values():
                drop(dsn, bootstrap, config)
    return out


def labels_of(dsn: str, config: WorkerConfig) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            f'SELECT count(*) FROM "{config.schema_}".labels WHERE origin = %s', ("human",)
        ).fetchone()
    return int(row[0]) if row else 0


def throttled(check: Callable[[], bool], every: float) -> Callable[[], bool]:
    """check() at most once per `every` seconds (it queries the database); the answer is
    remembered in between."""
    state = {"at": 0.0, "value": False}

    def ask() -> bool:
        now = time.monotonic()
        if not state["value"] and now - state["at"] >= every:
            state["at"], state["value"] = now, check()
        return bool(state["value"])

    return ask


def summarize(
    windows: list[dict[str, Any]], labels: list[Any], ran_out: float, names: list[str]
) -> dict[str, Any]:
    def worst(selected: list[dict[str, Any]]) -> dict[str, Any]:
        errors = [abs(e) for w in selected for e in w["errorPoints"].values()]
        return {
            "windows": len(selected),
            "maxAbsErrorPoints": round(max(errors), 2) if errors else None,
            "meanAbsErrorPoints": round(statistics.mean(errors), 2) if errors else None,
        }

    steady = [w for w in windows if not w["transition"] and w["labels"] > 0]
    all_three = [w for w in steady if len(w["withWork"]) == len(names)]
    after = [w for w in steady if len(w["withWork"]) < len(names)]
    start = labels[0].at if labels else 0.0
    before_counts = counts_between(labels, start, ran_out, names)
    after_counts = counts_between(labels, ran_out + 1.0, float("inf"), names)
    return {
        "whileAllHadWork": worst(all_three),
        "afterTheFirstRanOut": worst(after),
        "wholePhaseShares": {
            "whileAllHadWork": {k: round(v, 4) for k, v in shares_of(before_counts).items()},
            "afterTheFirstRanOut": {k: round(v, 4) for k, v in shares_of(after_counts).items()},
        },
        "ranOutAfterSeconds": round(ran_out - start, 2),
    }


# --- main -----------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--labelers", type=int, default=32)
    p.add_argument("--items", type=int, default=60_000, help="throughput: pending items")
    p.add_argument("--labels-per-item", type=int, default=7)
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--sequential", type=int, default=300, help="lone labeler's labels")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--fair-items", type=int, default=30_000, help="items of campaigns b and c")
    p.add_argument("--fair-items-a", type=int, default=3_000, help="items of campaign a")
    p.add_argument("--after", type=float, default=10.0, help="seconds after a ran out")
    p.add_argument("--max-seconds", type=float, default=120.0, help="fairShare at most")
    p.add_argument("--window", type=float, default=2.0, help="fair-share window, seconds")
    p.add_argument("--sections", nargs="+", choices=["throughput", "fairShare"],
                   default=["throughput", "fairShare"])  # fmt: skip
    p.add_argument("--think-min", type=float, default=0.2, help="paced: least think time, s")
    p.add_argument("--think-max", type=float, default=1.0, help="paced: most think time, s")
    p.add_argument("--seed", type=int, default=13, help="paced: the think times' seed")
    p.add_argument(
        "--baseline-router-source",
        type=Path,
        help="an operator/ folder of another commit (`git archive <commit> operator | tar -x "
        "-C /tmp/old`): its router runs as routedBaseline, next to this checkout's",
    )
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--keep", action="store_true", help="keep the schemas and topics")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    dsn, bootstrap = stack_settings()
    results: dict[str, Any] = {
        "machine": machine(dsn),
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("out", "keep")
        },
    }
    if "throughput" in args.sections:
        results["throughput"] = throughput(args, dsn, bootstrap)
    if "fairShare" in args.sections:
        results["fairShare"] = fair_share(args, dsn, bootstrap)
    results["machine"]["loadAverageAtEnd"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
