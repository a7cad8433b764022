"""A campaign schema's first migrate() as the database fills with campaign schemas, this
tree's store/migrations.py against an older tree's, alone on one backend each.

    LABELOPS_POSTGRES_DSN=... python bench/bench_migrate_at_scale.py --baseline /tmp/base

What the operator pays PostgreSQL for each new campaign, and why it grew with the number of
campaigns: a migrate found the schema's functions by scanning pg_proc (no index leads with
pronamespace), printed their signatures with regprocedure (a visibility check that reads
every function of that name, one per campaign schema) and had each SQL function body
checked at CREATE (resolving each call in it the same way). Three codes, each in a database
of its own (so each sees its own catalog grow), schema after schema in turn (old, new as
the operator calls it, new with body checks, then again), so the machine's drift hits all
three alike:
  old        the baseline tree's migrate(conn, schema);
  operator   this tree's migrate(conn, schema, check_bodies=False), as the operator calls it;
  checked    this tree's migrate(conn, schema), as every test calls it.
Reported per --bucket schemas: the backend's CPU (from /proc) and wall time of a fresh
migrate, and of an up-to-date one (a resync pass's) on the first schema; the totals over all
--schemas; and operator over old. The migration and function files are the package data of
this tree for all three (the baseline's migrations.py reads them), so an older tree with
other files is not comparable: the script refuses one whose files differ.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.util
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from cputime import process_cpu_seconds  # noqa: E402  (bench/ on the path, as above)

REPO = Path(__file__).resolve().parent.parent
STORE = Path("operator") / "labelops" / "store"
CODES = ("old", "operator", "checked")


def migrations_module(tree: Path, name: str) -> ModuleType:
    """labelops/store/migrations.py of `tree`, imported under `name`."""
    spec = importlib.util.spec_from_file_location(name, tree / STORE / "migrations.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def same_sql_files(baseline: Path) -> list[str]:
    """The migration and function files that differ between the trees (empty: none)."""
    differ = []
    for folder in ("migrations", "functions"):
        ours, theirs = REPO / STORE / folder, baseline / STORE / folder
        names = {p.name for p in ours.glob("*.sql")} | {p.name for p in theirs.glob("*.sql")}
        for name in sorted(names):
            a, b = ours / name, theirs / name
            if not (a.exists() and b.exists() and filecmp.cmp(a, b, shallow=False)):
                differ.append(f"{folder}/{name}")
    return differ


def backend_cpu(pid: int) -> float:
    seconds = process_cpu_seconds(pid)
    assert seconds is not None, f"backend {pid} is gone"
    return seconds


def main(args: argparse.Namespace) -> dict[str, Any]:
    sys.path[:0] = [str(REPO / "bench"), str(REPO / "operator")]
    import psycopg
    from psycopg import sql

    from run import machine

    baseline = Path(args.baseline)
    differ = same_sql_files(baseline)
    if differ:
        raise SystemExit(f"the baseline's SQL files differ from this tree's: {differ}")
    old, new = (
        migrations_module(baseline, "baseline_migrations"),
        migrations_module(REPO, "new_migrations"),
    )
    calls: dict[str, Callable[[Any, str], list[str]]] = {
        "old": lambda conn, schema: old.migrate(conn, schema),
        "operator": lambda conn, schema: new.migrate(conn, schema, check_bodies=False),
        "checked": lambda conn, schema: new.migrate(conn, schema),
    }
    dsn = os.environ["LABELOPS_POSTGRES_DSN"]
    run_id = uuid.uuid4().hex[:8]
    databases = {code: f"bench_migrate_{code}_{run_id}" for code in CODES}
    results: dict[str, Any] = {
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "write"},
    }
    with psycopg.connect(dsn, autocommit=True) as admin:
        for database in databases.values():
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    conns: dict[str, Any] = {}
    try:
        for code, database in databases.items():
            conns[code] = psycopg.connect(
                psycopg.conninfo.make_conninfo(dsn, dbname=database), autocommit=True
            )
        pids = {
            code: conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            for code, conn in conns.items()
        }
        totals = {code: {"cpu": 0.0, "wall": 0.0} for code in CODES}
        bucket = {code: {"cpu": 0.0, "wall": 0.0} for code in CODES}
        buckets: list[dict[str, Any]] = []
        for n in range(args.schemas):
            order = CODES if n % 2 == 0 else tuple(reversed(CODES))
            for code in order:
                cpu, wall = backend_cpu(pids[code]), time.perf_counter()
                applied = calls[code](conns[code], f"campaign_{n}")
                bucket[code]["wall"] += time.perf_counter() - wall
                bucket[code]["cpu"] += backend_cpu(pids[code]) - cpu
                assert applied, f"{code}: a fresh schema had nothing to migrate"
            if (n + 1) % args.bucket == 0:
                row: dict[str, Any] = {"schemas": n + 1}
                for code in CODES:
                    up_cpu, up_wall = backend_cpu(pids[code]), time.perf_counter()
                    for _ in range(args.up_to_date_runs):
                        assert calls[code](conns[code], "campaign_0") == []
                    row[code] = {
                        "freshCpuMs": round(bucket[code]["cpu"] * 1e3 / args.bucket, 1),
                        "freshWallMs": round(bucket[code]["wall"] * 1e3 / args.bucket, 1),
                        "upToDateCpuMs": round(
                            (backend_cpu(pids[code]) - up_cpu) * 1e3 / args.up_to_date_runs, 2
                        ),
                        "upToDateWallMs": round(
                            (time.perf_counter() - up_wall) * 1e3 / args.up_to_date_runs, 2
                        ),
                    }
                    for key in ("cpu", "wall"):
                        totals[code][key] += bucket[code][key]
                        bucket[code][key] = 0.0
                row["operatorOverOldFreshCpu"] = round(
                    row["operator"]["freshCpuMs"] / max(row["old"]["freshCpuMs"], 1e-9), 3
                )
                buckets.append(row)
                print(json.dumps(row), flush=True)
        results["buckets"] = buckets
        results["totals"] = {
            code: {
                "freshCpuSeconds": round(t["cpu"], 2),
                "freshWallSeconds": round(t["wall"], 2),
                "freshCpuMsPerSchema": round(t["cpu"] * 1e3 / len(buckets) / args.bucket, 1),
            }
            for code, t in totals.items()
        }
        results["totals"]["operatorOverOldCpu"] = round(
            totals["operator"]["cpu"] / totals["old"]["cpu"], 3
        )
        results["totals"]["checkedOverOldCpu"] = round(
            totals["checked"]["cpu"] / totals["old"]["cpu"], 3
        )
    finally:
        for conn in conns.values():
            conn.close()
        with psycopg.connect(dsn, autocommit=True) as admin:
            for database in databases.values():
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(database)
                    )
                )
    results["machine"]["loadAverageAtEnd"] = list(os.getloadavg())
    return results


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", required=True, help="a worktree of the older code")
    p.add_argument("--schemas", type=int, default=1000, help="campaign schemas per code")
    p.add_argument("--bucket", type=int, default=100, help="schemas per reported row")
    p.add_argument("--up-to-date-runs", type=int, default=20)
    p.add_argument("--write", action="store_true", help="write bench/results/migrate_at_scale.json")
    return p.parse_args()


if __name__ == "__main__":
    parsed = parse_args()
    outcome = main(parsed)
    print(json.dumps(outcome, indent=2))
    if parsed.write:
        (REPO / "bench" / "results" / "migrate_at_scale.json").write_text(
            json.dumps(outcome, indent=2) + "\n"
        )
