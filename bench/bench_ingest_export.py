"""Benchmark of ingest (Kafka -> PostgreSQL) and export (PostgreSQL -> JSON lines), new code
against old in the same run, on the real local stack.

    LABELOPS_POSTGRES_DSN=... LABELOPS_KAFKA_BOOTSTRAP=... \\
        python bench/bench_ingest_export.py --baseline /tmp/labelops-h7-baseline

Measures, and prints as JSON (written to bench/results/ingest_export.json by --write):
  ingest       --items item messages produced once to a fresh items topic, then taken in by
               one Ingestor (one process, a fresh consumer group and schema per run) until
               every message is handled: items per second from the first batch handed to the
               database to the last commit (the consumer group's join is left out, it is the
               same for both), with durable commits (synchronous_commit on) and without;
  predictions  --items prediction messages for those items on a fresh predictions topic,
               taken in by each code's Ingestor (durable commits), under the default policy
               (model.order priority, no audits) and, on the async-commit run's items, under
               model.order uncertainty with 5% audits ("<code>-uncertainty");
  export       --labels labels of completed items, exported as jsonl (and consolidated,
               rlhf where the code has them) to /dev/null by a child process: labels per
               second and the child's peak RSS (its own rusage, so the parent's memory does
               not count).
Every run of the old code (--baseline, a `git worktree` of the commit before this work) runs
in a child process whose PYTHONPATH points at that tree, so both run on the same stack, data
and machine, one after the other; each ingest schema is migrated by the code that ingests
into it (its SQL functions are part of what is measured).

Besides wall time, each measurement reports its CPU per item or label: the child process's
own (rusage) and the PostgreSQL server's (every process of the postmaster, from /proc, when
the server runs on this machine: on a private stack nobody else's queries count), and for
ingest that of the child's own backends ("backends": its pool's server processes, read
before they close), which other clients of a shared server do not inflate. On a machine
shared with other work the wall figures swing with the load; the CPU figures are what the
code costs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # devstack: the stack's clients, whichever code is measured

from devstack.kafka import client_connection  # noqa: E402

QUIET_KAFKA = {"log_level": 3}


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


# --- children: one measurement each, with the code of --code -------------------------------


def _worker_config(schema: str, topics: dict[str, str], group: str, task: dict[str, Any]) -> Any:
    try:
        from labelops.api.worker_configmap import WorkerConfig
    except ImportError:  # the old code's name
        from labelops.api.workerconfig import WorkerConfig  # type: ignore[no-redef]
    fields = WorkerConfig.model_fields["topics"].annotation.model_fields  # type: ignore[union-attr]
    return WorkerConfig.model_validate(
        {
            "namespace": "bench",
            "name": schema.replace("_", "-"),
            "task": task,
            "target": {"items": 1_000_000, "labelsPerItem": 1},
            "quotas": {"perLabelerDaily": 1000, "maxLeasesPerLabeler": 5},
            "schema": schema,
            "topics": {k: v for k, v in topics.items() if k in fields},
            "consumerGroup": group,
        }
    )


def child_ingest(args: argparse.Namespace) -> dict[str, Any]:
    from psycopg_pool import ConnectionPool

    from labelops.worker.ingest import Ingestor

    topics = json.loads(args.topics)
    config = _worker_config(args.schema, topics, args.group, json.loads(args.task))
    kwargs = {} if args.durable else {"options": "-c synchronous_commit=off"}
    backends: list[int] = []  # the server processes of this ingest's connections
    pool: ConnectionPool[Any] = ConnectionPool(
        args.dsn,
        min_size=1,
        max_size=2,
        kwargs=kwargs,
        open=False,
        configure=lambda conn: backends.append(conn.info.backend_pid),
    )
    pool.open(wait=True, timeout=30)
    kafka = client_connection(args.bootstrap)
    try:
        from labelops.worker.pipeline import Pipeline
    except ImportError:  # code from before the shared Kafka connection: security goes in here
        old_ingestor: Any = Ingestor
        ingestor = old_ingestor(pool, config, args.bootstrap, consumer_config=kafka.client_config())
    else:
        ingestor = Ingestor(Pipeline(pool, config, kafka), consumer_config=QUIET_KAFKA)
    handled = 0
    first = last = 0.0
    deadline = time.monotonic() + args.timeout
    try:
        while handled < args.expect and time.monotonic() < deadline:
            began = time.perf_counter()
            n = ingestor.poll_once(timeout=1.0)
            if n and not first:
                first = began
            handled += n
            last = time.perf_counter()
    finally:
        backend_seconds = process_seconds(backends)  # while they still run
        ingestor.close()
        pool.close()
    seconds = last - first
    return {
        "handled": handled,
        "seconds": round(seconds, 2),
        "perSecond": round(handled / seconds) if seconds else None,
        "durableCommits": args.durable,
        "complete": handled >= args.expect,
        **({"backendCpuSeconds": round(backend_seconds, 2)} if backend_seconds is not None else {}),
    }


def process_seconds(pids: list[int]) -> float | None:
    """CPU seconds the processes `pids` (this child's PostgreSQL backends) used so far, from
    /proc; None when the server is not on this machine. Unlike the whole server's figure
    (ServerCpu), other clients of a shared server do not count in it."""
    total = 0.0
    try:
        for pid in set(pids):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ServerCpu.TICK
    except OSError:
        return None
    return total


def child_export(args: argparse.Namespace) -> dict[str, Any]:
    import inspect

    import psycopg

    from labelops.report import export

    params = inspect.signature(export.write_export).parameters
    started = time.perf_counter()
    with psycopg.connect(args.dsn) as conn, open(os.devnull, "wb") as sink:
        binary = hasattr(export, "write_lines")  # the new code writes bytes
        out: Any = sink if binary else open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
        extra = {"method": args.method} if "method" in params else {}
        result = export.write_export(conn, args.schema, args.format, out, **extra)
    seconds = time.perf_counter() - started
    count = result if isinstance(result, int) else result.written + result.ties
    return {"rows": count, "seconds": round(seconds, 2)}


class ServerCpu:
    """CPU seconds of the PostgreSQL server behind `dsn` (the postmaster and all its
    processes, the ones that ended included), when it runs on this machine: what the
    database spent on a measurement, which a loaded machine does not inflate the way it
    stretches wall time. None when /proc does not show it (a remote server)."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, dsn: str) -> None:
        import psycopg

        with psycopg.connect(dsn) as conn:
            backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        try:
            assert backend is not None
            self.postmaster: int | None = int(self._stat(backend[0])[1])
            self.seconds()
        except (OSError, AssertionError):
            self.postmaster = None

    @staticmethod
    def _stat(pid: int) -> list[str]:
        # Fields after the command name: state, ppid, ..., utime at [11], stime, cutime, cstime.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

    def seconds(self) -> float | None:
        if self.postmaster is None:
            return None
        own = self._stat(self.postmaster)
        ticks = sum(int(x) for x in own[11:15])  # its own and its reaped children's
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = self._stat(int(entry.name))
            except OSError:
                continue  # ended meanwhile: its time is in the postmaster's children's
            if int(fields[1]) == self.postmaster:
                ticks += int(fields[11]) + int(fields[12])
        return ticks / self.TICK


SERVER_CPU: ServerCpu | None = None


def run_child(code: Path, mode: str, **options: Any) -> dict[str, Any]:
    server_before = SERVER_CPU.seconds() if SERVER_CPU else None
    argv = [sys.executable, __file__, mode]
    for name, value in options.items():
        if value is True:
            argv.append(f"--{name}")
        elif value is not False and value is not None:
            argv += [f"--{name}", str(value)]
    env = {**os.environ, "PYTHONPATH": str(code / "operator")}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}"}
    result: dict[str, Any] = json.loads(output)
    result["peakRssMiB"] = round(usage.ru_maxrss / 1024, 1)
    result["cpuSeconds"] = round(usage.ru_utime + usage.ru_stime, 2)
    server_after = SERVER_CPU.seconds() if SERVER_CPU else None
    if server_before is not None and server_after is not None:
        result["postgresCpuSeconds"] = round(server_after - server_before, 2)
    return result


def per_op(measured: dict[str, Any], ops: int) -> None:
    """CPU microseconds per item or label: the measuring process's and the database's."""
    if "cpuSeconds" in measured:
        measured["cpuMicrosecondsPerOp"] = {
            "process": round(measured["cpuSeconds"] * 1e6 / ops, 1),
            **(
                {"postgres": round(measured["postgresCpuSeconds"] * 1e6 / ops, 1)}
                if "postgresCpuSeconds" in measured
                else {}
            ),
            **(
                {"backends": round(measured["backendCpuSeconds"] * 1e6 / ops, 1)}
                if "backendCpuSeconds" in measured
                else {}
            ),
        }


# --- the parent: data, then one child per measurement --------------------------------------


CLASSIFICATION = {
    "type": "classification",
    "instructions": "Is it helpful?",
    "choices": ["helpful", "unhelpful"],
}


def fresh_schema(dsn: str, prefix: str, created: list[str], code: Path = REPO) -> str:
    """A new campaign schema, migrated by `code` (its tables and its SQL functions)."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    created.append(schema)
    migrated = run_child(code, "child-migrate", dsn=dsn, schema=schema)
    assert "error" not in migrated, f"migrating {schema} with {code} failed"
    return schema


def child_migrate(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg

    from labelops.store.migrations import migrate

    with psycopg.connect(args.dsn, autocommit=True) as conn:
        migrate(conn, args.schema)
    return {"schema": args.schema}


def create_topic(bootstrap: str, kind: str, partitions: int) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"bench.{kind}.{uuid.uuid4().hex[:8]}"
    admin = AdminClient(client_connection(bootstrap).client_config(QUIET_KAFKA))
    topic = NewTopic(name, num_partitions=partitions, replication_factor=1)
    admin.create_topics([topic])[name].result(30)
    return name


def produce(bootstrap: str, topic: str, count: int, message: Any) -> float:
    from confluent_kafka import Producer

    producer = Producer(
        client_connection(bootstrap).client_config(
            {
                "linger.ms": 20,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
                **QUIET_KAFKA,
            }
        )
    )
    began = time.perf_counter()
    for n in range(count):
        key, value = message(n)
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        if n % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0, "not every message was delivered"
    return time.perf_counter() - began


def item_message(n: int) -> tuple[bytes, bytes]:
    item_id = f"item-{n}"
    value: dict[str, Any] = {
        "id": item_id,
        "payload": {"text": f"text of item {n}, a sentence or so long."},
    }
    if n % 10:
        value["priority"] = n % 10
    return item_id.encode(), json.dumps(value).encode()


def prediction_message(n: int) -> tuple[bytes, bytes]:
    item_id = f"item-{n}"
    model = {
        "version": "v1",
        "prediction": {"choice": "helpful" if n % 3 else "unhelpful"},
        "confidence": (n % 1000) / 1000,
    }
    return item_id.encode(), json.dumps({"id": item_id, "model": model}).encode()


def bulk_labels(dsn: str, schema: str, count: int, per_item: int = 3) -> None:
    import psycopg
    from psycopg import sql

    items = -(-count // per_item)
    t = {name: sql.Identifier(schema, name) for name in ("items", "labels")}
    with psycopg.connect(dsn) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {items} (external_id, payload, label_count, completed_at)"
                " SELECT 'item-' || g, jsonb_build_object('prompt', 'Which is better? ' || g,"
                "   'responses', jsonb_build_array(jsonb_build_object('id', 'a', 'text', 'one'),"
                "                                  jsonb_build_object('id', 'b', 'text', 'two'))),"
                "   %s, now()"
                " FROM generate_series(1, %s) g"
            ).format(**t),
            (per_item, items),
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {labels} (id, item_id, labeler, value, ordinal)"
                " SELECT gen_random_uuid(), i.id, 'labeler-' || ((i.id + k) %% 50),"
                "        jsonb_build_object('preferred',"
                "          CASE WHEN (i.id + k) %% 4 = 0 THEN 'b' ELSE 'a' END), k + 1"
                " FROM {items} i CROSS JOIN generate_series(0, %s) k"
            ).format(**t),
            (per_item - 1,),
        )
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("items", "labels"):
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(t[table]))


# model.order uncertainty with audits: each scored item gets a claim rank of its own (and
# one in 20 is an audit), so writing the score and what follows from it are two writes of
# the row unless they are one.
UNCERTAINTY_POLICY = {"order_by": "uncertainty", "audit_rate": 0.05}


def set_policy(dsn: str, schema: str, policy: dict[str, Any]) -> None:
    import psycopg
    from psycopg import sql

    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in policy.items()
    )
    with psycopg.connect(dsn) as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET {}").format(
                sql.Identifier(schema, "campaign_policy"), assignments
            )
        )


def postgres_settings(dsn: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return {
            name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in ("fsync", "synchronous_commit", "full_page_writes", "server_version")
        }


def drop_schemas(dsn: str, schemas: list[str]) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def has_format(code: Path, fmt: str) -> bool:
    export = code / "operator" / "labelops" / "report" / "export.py"
    return f'"{fmt}"' in export.read_text()


def has_predictions_topic(code: Path) -> bool:
    configmap = code / "operator" / "labelops" / "api" / "worker_configmap.py"
    return configmap.exists() and "predictions:" in configmap.read_text()


def main(args: argparse.Namespace) -> None:
    sys.path[:0] = [str(REPO / "bench"), str(REPO)]
    from run import machine

    dsn = os.environ["LABELOPS_POSTGRES_DSN"]
    bootstrap = os.environ["LABELOPS_KAFKA_BOOTSTRAP"]
    baseline = Path(args.baseline) if args.baseline else None
    codes = {"new": REPO, **({"old": baseline} if baseline else {})}
    global SERVER_CPU
    SERVER_CPU = ServerCpu(dsn)
    results: dict[str, Any] = {
        "machine": machine(),
        "postgres": postgres_settings(dsn),
        "items": args.items,
        "labels": args.labels,
        "baseline": str(baseline) if baseline else None,
        "baselineCommit": _commit(baseline) if baseline else None,
        "newCommit": _commit(REPO),
    }
    schemas: list[str] = []
    task = json.dumps(CLASSIFICATION)
    try:
        if "ingest" in args.parts:
            items_topic = create_topic(bootstrap, "items", args.partitions)
            log(f"producing {args.items} item messages to {items_topic}")
            produced = produce(bootstrap, items_topic, args.items, item_message)
            results["producedItemsSeconds"] = round(produced, 2)
            ingest: dict[str, Any] = {}
            predictions: dict[str, Any] = {}
            prediction_topics: dict[str, str] = {}
            for name, code in codes.items():
                for durable in (True, False):
                    schema = fresh_schema(dsn, f"bench_ingest_{name}", schemas, code)
                    label = f"{name}-{'durable' if durable else 'async-commit'}"
                    log(f"ingest {label}")
                    ingest[label] = run_child(
                        code,
                        "child-ingest",
                        dsn=dsn,
                        bootstrap=bootstrap,
                        schema=schema,
                        topics=json.dumps({"items": items_topic, "labels": "bench.none"}),
                        group=f"bench-{uuid.uuid4().hex[:8]}",
                        task=task,
                        expect=args.items,
                        durable=durable,
                        timeout=args.timeout,
                    )
                    per_op(ingest[label], args.items)
                    log(json.dumps(ingest[label]))
                    if not has_predictions_topic(code):
                        continue
                    if durable:
                        predictions[name] = measure_predictions(
                            args, dsn, bootstrap, schema, task, code, prediction_topics
                        )
                    elif "uncertainty" in args.prediction_policies:
                        # The async-commit run's items, scored under a policy that gives
                        # every scored item its own audit decision and claim rank.
                        set_policy(dsn, schema, UNCERTAINTY_POLICY)
                        measured = measure_predictions(
                            args, dsn, bootstrap, schema, task, code, prediction_topics
                        )
                        measured["policy"] = UNCERTAINTY_POLICY
                        predictions[f"{name}-uncertainty"] = measured
            results["ingest"] = ingest
            results["predictions"] = predictions
        if "export" in args.parts:
            schema = fresh_schema(dsn, "bench_export", schemas)
            log(f"inserting {args.labels} labels")
            bulk_labels(dsn, schema, args.labels)
            export: dict[str, Any] = {}
            for name, code in codes.items():
                for fmt in args.formats:
                    if not has_format(code, fmt):
                        continue  # an older code without that format
                    log(f"export {name} {fmt}")
                    measured = run_child(
                        code, "child-export", dsn=dsn, schema=schema, format=fmt, method="majority"
                    )
                    if measured.get("seconds"):
                        measured["labelsPerSecond"] = round(args.labels / measured["seconds"])
                    per_op(measured, args.labels)
                    export[f"{name}-{fmt}"] = measured
                    log(json.dumps(measured))
            results["export"] = export
    finally:
        if not args.keep:
            drop_schemas(dsn, schemas)
    results["loadAverageAtEnd"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(results, indent=2)
    print(text)
    if args.write:
        write_results(results, args.session)


def write_results(results: dict[str, Any], session: str) -> None:
    """bench/results/ingest_export.json with `results` under the key `session`, the other
    sessions' figures kept."""
    path = REPO / "bench" / "results" / "ingest_export.json"
    recorded: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    recorded[session] = results
    path.write_text(json.dumps(recorded, indent=2) + "\n")


def measure_predictions(
    args: argparse.Namespace,
    dsn: str,
    bootstrap: str,
    schema: str,
    task: str,
    code: Path,
    topics: dict[str, str],
) -> dict[str, Any]:
    """Predictions for the items of `schema`, taken in by `code`; the topics are made and
    filled on first use and read again by every code (a fresh consumer group each)."""
    if not topics:
        topics["predictions"] = create_topic(bootstrap, "predictions", args.partitions)
        log(f"producing {args.items} prediction messages to {topics['predictions']}")
        produce(bootstrap, topics["predictions"], args.items, prediction_message)
        topics["items"] = create_topic(bootstrap, "items", 1)
    predictions_topic, empty_items = topics["predictions"], topics["items"]
    log(f"ingest predictions with {code} (durable)")
    measured = run_child(
        code,
        "child-ingest",
        dsn=dsn,
        bootstrap=bootstrap,
        schema=schema,
        topics=json.dumps(
            {"items": empty_items, "labels": "bench.none", "predictions": predictions_topic}
        ),
        group=f"bench-{uuid.uuid4().hex[:8]}",
        task=task,
        expect=args.items,
        durable=True,
        timeout=args.timeout,
    )
    measured["note"] = "predictions for the items just ingested, applied to them"
    per_op(measured, args.items)
    log(json.dumps(measured))
    return measured


def _commit(tree: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="a worktree of the old code")
    parser.add_argument("--parts", nargs="+", default=["ingest", "export"])
    parser.add_argument("--formats", nargs="+", default=["jsonl", "consolidated", "rlhf"])
    parser.add_argument(
        "--prediction-policies",
        nargs="*",
        default=["default", "uncertainty"],
        help="predictions under the default policy (always) and under model.order"
        " uncertainty with 5%% audits (on the async-commit run's items)",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="per ingest run")
    parser.add_argument("--keep", action="store_true", help="keep the schemas")
    parser.add_argument("--write", action="store_true", help="write bench/results/")
    parser.add_argument(
        "--session", default="latest", help="the key of bench/results/ingest_export.json to write"
    )
    ingest = sub.add_parser("child-ingest")
    for name in ("dsn", "bootstrap", "schema", "topics", "group", "task"):
        ingest.add_argument(f"--{name}", required=True)
    ingest.add_argument("--expect", type=int, required=True)
    ingest.add_argument("--durable", action="store_true")
    ingest.add_argument("--timeout", type=float, default=900.0)
    migrate = sub.add_parser("child-migrate")
    for name in ("dsn", "schema"):
        migrate.add_argument(f"--{name}", required=True)
    export = sub.add_parser("child-export")
    for name in ("dsn", "schema", "format", "method"):
        export.add_argument(f"--{name}", required=True)
    return parser.parse_args()


if __name__ == "__main__":
    parsed = parse_args()
    if parsed.mode == "child-migrate":
        print(json.dumps(child_migrate(parsed)))
    elif parsed.mode == "child-ingest":
        print(json.dumps(child_ingest(parsed)))
    elif parsed.mode == "child-export":
        print(json.dumps(child_export(parsed)))
    else:
        main(parsed)
