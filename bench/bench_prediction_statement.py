"""The ingest statement that applies predictions (labelops.store.items.IngestStatements
.upsert_predictions), this tree's against an older tree's, alone on one backend.

    LABELOPS_POSTGRES_DSN=... python bench/bench_prediction_statement.py --baseline /tmp/base

A whole ingest run (bench_ingest_export.py) swings with the machine's speed within a run;
this isolates the statement. One fresh campaign schema (migrated by this tree) holds
--items items; each run applies one prediction to every item (a new model version, so every
row changes), in batches of --batch as the ingestor sends them, each batch committed
(durable). Runs alternate between the two codes (old, new, new, old, ...), each after a
VACUUM of items so neither inherits the other's dead rows, --runs per code and policy.
Reported: the backend's CPU (from /proc) and wall time per prediction, and new over old.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from cputime import process_cpu_seconds  # noqa: E402  (bench/ on the path, as above)

REPO = Path(__file__).resolve().parent.parent
POLICIES = {"default": "priority", "uncertainty": "uncertainty"}
AUDIT_RATE = 0.05


def statements_module(tree: Path, name: str) -> ModuleType:
    """labelops/store/items.py of `tree`, imported under `name` (on this tree's package)."""
    spec = importlib.util.spec_from_file_location(
        name, tree / "operator" / "labelops" / "store" / "items.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def backend_cpu(pid: int) -> float:
    seconds = process_cpu_seconds(pid)
    assert seconds is not None, f"backend {pid} is gone"
    return seconds


def batches(items: int, size: int, version: str) -> list[str]:
    """Prediction batches as the ingestor sends them: JSON arrays sorted by item id."""
    out = []
    for start in range(0, items, size):
        messages = sorted(
            (
                f"item-{n}",
                json.dumps(
                    {
                        "id": f"item-{n}",
                        "model": {
                            "version": version,
                            "prediction": {"choice": "helpful" if n % 3 else "unhelpful"},
                            "confidence": ((n * 7 + len(version)) % 1000) / 1000,
                        },
                    }
                ),
            )
            for n in range(start, min(start + size, items))
        )
        out.append("[" + ",".join(m for _, m in messages) + "]")
    return out


def main(args: argparse.Namespace) -> dict[str, Any]:
    sys.path[:0] = [str(REPO / "bench"), str(REPO / "operator")]
    import psycopg
    from psycopg import sql

    from labelops.store.migrations import migrate
    from run import machine

    dsn = os.environ["LABELOPS_POSTGRES_DSN"]
    codes = {
        "old": statements_module(Path(args.baseline), "baseline_items"),
        "new": statements_module(REPO, "new_items"),
    }
    schema = f"bench_predstmt_{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "write"},
        "schema": "one schema migrated by this tree; both statements run on it",
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, schema)
        items = sql.Identifier(schema, "items")
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (external_id, payload, priority)"
                " SELECT 'item-' || n, jsonb_build_object('text', 'text of item ' || n), n %% 10"
                " FROM generate_series(0, %s - 1) n"
            ).format(items),
            (args.items,),
        )
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(items))
    try:
        with psycopg.connect(dsn) as conn:
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            statements = {
                name: m.IngestStatements(schema).upsert_predictions for name, m in codes.items()
            }
            version = 0
            for policy in args.policies:
                conn.execute(
                    sql.SQL("UPDATE {} SET order_by = %s, audit_rate = %s").format(
                        sql.Identifier(schema, "campaign_policy")
                    ),
                    (POLICIES[policy], AUDIT_RATE),
                )
                conn.commit()
                totals = {name: {"cpu": 0.0, "wall": 0.0} for name in statements}
                for run in range(args.runs * 2):
                    name = ("old", "new", "new", "old")[run % 4]
                    version += 1
                    with psycopg.connect(dsn, autocommit=True) as vacuum:
                        vacuum.execute(sql.SQL("VACUUM {}").format(sql.Identifier(schema, "items")))
                    work = batches(args.items, args.batch, f"v{version}")
                    for batch in work:
                        cpu, wall = backend_cpu(pid), time.perf_counter()
                        row = conn.execute(statements[name], (batch,)).fetchone()
                        conn.commit()
                        totals[name]["wall"] += time.perf_counter() - wall
                        totals[name]["cpu"] += backend_cpu(pid) - cpu
                        assert row is not None and len(row[0]) == batch.count('"id"'), (
                            f"{name}: not every prediction was applied"
                        )
                predictions = args.items * args.runs
                figures: dict[str, Any] = {
                    name: {
                        "backendCpuMicrosecondsPerPrediction": round(
                            t["cpu"] * 1e6 / predictions, 1
                        ),
                        "wallMicrosecondsPerPrediction": round(t["wall"] * 1e6 / predictions, 1),
                    }
                    for name, t in totals.items()
                }
                figures["newOverOldCpu"] = round(totals["new"]["cpu"] / totals["old"]["cpu"], 3)
                results[policy] = figures
                print(policy, json.dumps(figures), flush=True)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    results["machine"]["loadAverageAtEnd"] = list(os.getloadavg())
    return results


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", required=True, help="a worktree of the older code")
    p.add_argument("--items", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=5_000, help="predictions per statement")
    p.add_argument("--runs", type=int, default=8, help="runs per code and policy")
    p.add_argument(
        "--policies", nargs="+", choices=sorted(POLICIES), default=["uncertainty", "default"]
    )
    p.add_argument(
        "--write", action="store_true", help="write bench/results/prediction_statement.json"
    )
    return p.parse_args()


if __name__ == "__main__":
    parsed = parse_args()
    outcome = main(parsed)
    print(json.dumps(outcome, indent=2))
    if parsed.write:
        (REPO / "bench" / "results" / "prediction_statement.json").write_text(
            json.dumps(outcome, indent=2) + "\n"
        )
