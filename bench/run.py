"""`make bench`: every benchmark on the real local stack, one results file.

Runs bench_store.py, bench_worker.py and bench_operator.py (each writes its own JSON under
bench/results/), then writes bench/results/SUMMARY.md: each figure the issues set a target
for, the target, what was measured, and the machine it was measured on, including its load
while the benchmarks ran (this machine is shared; figures move with its load).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO))  # devstack/ is a package of the repository

from devstack import stack  # noqa: E402  (needs the path above when run as a script)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memoryGiB": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadAverageAtStart": [round(x, 2) for x in os.getloadavg()],
    }


def run_script(name: str, env: dict[str, str], args: list[str]) -> dict[str, Any]:
    out = RESULTS / f"{name}.json"
    script = REPO / "bench" / f"bench_{name}.py"
    print(f"==> {script.name} {' '.join(args)}", flush=True)
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    sys.stderr.write(proc.stderr[-4000:])
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}", "stderr": proc.stderr[-2000:]}
    start = proc.stdout.find("{")
    result: dict[str, Any] = json.loads(proc.stdout[start:])
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _get(doc: dict[str, Any], *path: str) -> Any:
    node: Any = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _rate(worker: dict[str, Any], scenario: str) -> str | None:
    rates = _get(worker, "scenarios", scenario, "labelsPerSecondOverRounds")
    if not rates:
        return None
    return (
        f"{rates['median']:,.0f}/s median of {rates['rounds']} rounds "
        f"({rates['min']:,.0f} to {rates['max']:,.0f})"
    )


def _speed_note(worker: dict[str, Any]) -> str:
    probes = [
        probe
        for scenario in (_get(worker, "scenarios") or {}).values()
        for run in scenario.get("rounds", [])
        for probe in run["speedProbeSeconds"]
    ]
    if not probes:
        return ""
    return (
        "This is a shared virtual machine whose speed drifts from minute to minute: a fixed "
        f"Python loop took {min(probes)} to {max(probes)} s of CPU around the worker rounds "
        "(worker.json has it per round, with the CPU milliseconds per label, which depend "
        "on it far less than labels per second do)."
    )


def _all_relayed(worker: dict[str, Any]) -> bool | None:
    scenarios = _get(worker, "scenarios")
    if not scenarios:
        return None
    return all(s.get("allRoundsRelayed") for s in scenarios.values())


def _pair(cpu: dict[str, Any] | None) -> str | None:
    if not cpu:
        return None
    return f"{cpu.get('workerMsPerLabel')} / {cpu.get('postgresMsPerLabel')}"


def summary_rows(store: dict[str, Any], worker: dict[str, Any], op: dict[str, Any]) -> list[
    tuple[str, str, Any, str]
]:  # fmt: skip
    return [
        ("operator: apply to Ready, median of 10", "< 3 s",
         _get(op, "applyToReady", "medianSeconds"), "s"),
        ("operator: 100 campaigns applied at once, all Ready", "< 60 s",
         _get(op, "bulk", "allReadySeconds"), "s"),
        ("operator: resident memory with 100 campaigns", "(report)",
         _get(op, "operatorRss", "rssMiB"), "MiB"),
        ("store: progress read at 1,000,000 labels, p99", "< 5 ms",
         _get(store, "progress", "p99Ms"), "ms"),
        ("store: claim p99 with 100,000 pending items (one labeler)", "< 20 ms",
         _get(store, "claim", "sequential", "p99Ms"), "ms"),
        ("worker: claim p99 over HTTP, one labeler, 100,000 pending", "< 20 ms",
         _get(worker, "oneLabeler", "claimLatencyMs", "p99"), "ms"),
        ("worker: accepted labels/s, 32 labelers, committed and relayed; claim, then "
         "submit (2 requests per label)", ">= 1,500/s", _rate(worker, "default"), ""),
        ("worker: the same, submitting with ?next=true (1 request per label, as the "
         "labeling page does)", ">= 1,500/s", _rate(worker, "default-next"), ""),
        ("worker: one process (LABELOPS_WORKER_PROCESSES=1), ?next=true", ">= 1,500/s",
         _rate(worker, "1-process-next"), ""),
        ("worker: one process, claim then submit", "(report)", _rate(worker, "1-process"), ""),
        ("worker: CPU per label, one process with ?next=true: worker / PostgreSQL",
         "(report)", _pair(_get(worker, "scenarios", "1-process-next", "cpuSecondsDuringRun")),
         " ms"),
        ("worker: every accepted label relayed to Kafka (every round)", "yes",
         _all_relayed(worker), ""),
        ("worker: progress read over HTTP, p99", "< 5 ms (store read)",
         _get(worker, "progress", "latencyMs", "p99"), "ms"),
    ]  # fmt: skip


def _scenario(doc: dict[str, Any], noise: float, per_item: int) -> dict[str, Any]:
    for scenario in doc.get("scenarios") or []:
        if scenario.get("labelNoise") == noise and scenario.get("labelsPerItem") == per_item:
            return dict(scenario)
    return {}


def _share(value: Any) -> str | None:
    return None if value is None else f"{100 * value:.1f}%"


def _session_order(key: str) -> tuple[int, str]:
    """Session keys in order: session9 < session9b < session10; (-1, "") for other keys."""
    found = re.fullmatch(r"session(\d*)([a-z]*)", key)
    return (int(found[1] or 0), found[2]) if found else (-1, "")


def quality_rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, Any, str]]:
    """The figures of models in the loop, data quality, ingest/export and the server choice."""
    worker, al = results.get("worker", {}), results.get("active_learning", {})
    cons, ie = results.get("consolidation", {}), results.get("ingest_export", {})
    clean, noisy = _scenario(al, 0.0, 1), _scenario(al, 0.05, 3)
    sent = ("allAnswers", "zheng_d_sentiment", "methods", "dawid-skene", "accuracyAllItems")
    prod = ("allAnswers", "zheng_d_product", "methods", "dawid-skene", "accuracyAllItems")
    adaptive = ("adaptive", "zheng_d_sentiment", "rule")
    # A fresh run writes its figures at the top; the committed file keeps earlier runs too.
    # Each part's figures come from the latest session that measured it (an ingest-only run
    # leaves the export figures of the run before it).
    sessions = sorted((k for k in ie if _session_order(k)[0] >= 0), key=_session_order)
    final: dict[str, Any] = (ie[sessions[-1]] if sessions else ie.get("run2Final")) or ie
    latest = {
        part: next((ie[k] for k in reversed(sessions) if part in ie[k]), final)
        for part in ("ingest", "predictions", "export")
    }
    statement = results.get("prediction_statement", {})
    chaos = results.get("chaos", {})
    faults = chaos.get("faults") or []
    lost = sum(f.get("labelsLost", 0) for f in faults) if faults else None
    return [
        ("worker server: uvicorn+greenlets kept; gunicorn+gevent labels/s over it, claim+submit",
         ">= 90% to switch", _get(worker, "serverComparison", "default", "currentOverBaseline",
                                  "labelsPerSecond", "median"), ""),
        ("active learning, SMS spam, clean labels: human labels saved vs all-human", ">= 80%",
         _share(_get(clean, "labelops", "humanLabelsSavedVsAllHuman")), ""),
        ("active learning, clean labels: machine-label accuracy vs truth", ">= 95%",
         _share(_get(clean, "labelops", "machineLabelAccuracy")), ""),
        ("active learning, 5% noise, 3 labels/item: human labels saved", ">= 80%",
         _share(_get(noisy, "labelops", "humanLabelsSavedVsAllHuman")), ""),
        ("Ground Truth-style fixed policy, clean: machine-label accuracy", "(compare)",
         _share(_get(clean, "groundTruthStyle", "machineLabelAccuracy")), ""),
        ("consolidation, D_PosSent, Dawid-Skene, every answer (published 0.960)", "+-0.005",
         _get(cons, *sent), ""),
        ("consolidation, D_Product, Dawid-Skene, every answer (published 0.940)", "+-0.005",
         _get(cons, *prod), ""),
        ("adaptive overlap, D_PosSent (min 2, max 7, 0.95): accuracy", ">= 0.95",
         _get(cons, *adaptive, "accuracy"), ""),
        ("adaptive overlap, D_PosSent: labels per item", "<= 7",
         _get(cons, *adaptive, "labelsPerItem"), ""),
        ("ingest, durable commits, one worker process", ">= 30,000 items/s",
         _get(latest["ingest"], "ingest", "new-durable", "perSecond"), "/s"),
        ("predictions ingest, durable commits", ">= 30,000/s",
         _get(latest["predictions"], "predictions", "new", "perSecond")
         or _get(latest["predictions"], "predictions", "perSecond"), "/s"),
        ("predictions ingest, model.order uncertainty with 5% audits", ">= 30,000/s",
         _get(latest["predictions"], "predictions", "new-uncertainty", "perSecond"), "/s"),
        ("predictions statement alone, uncertainty: backend CPU new over old", "(compare)",
         _get(statement, "uncertainty", "newOverOldCpu"), ""),
        ("export jsonl, 1,000,000 labels", ">= 100,000 labels/s",
         _get(latest["export"], "export", "new-jsonl", "labelsPerSecond"), "/s"),
        ("export jsonl, peak RSS", "constant",
         _get(latest["export"], "export", "new-jsonl", "peakRssMiB"), " MiB"),
        ("export rlhf", "the label rate it reads",
         _get(latest["export"], "export", "new-rlhf", "labelsPerSecond"), "/s"),
        ("chaos: faults passed, labels lost over all faults", "every fault, 0 lost",
         None if not faults else f"{sum(bool(f.get('passed')) for f in faults)} of "
         f"{len(faults)} passed, {lost} lost", ""),
    ]  # fmt: skip


def scale_rows(scale: dict[str, Any]) -> list[tuple[str, str, Any, str]]:
    """The operator at a thousand campaigns (bench_campaigns_at_scale.py)."""
    steady = ("steadyState",)
    n = scale.get("campaigns", 1000)
    return [
        (f"operator: {n} campaigns applied at once, all Ready", "< 300 s",
         _get(scale, "ready", "allReadySeconds"), " s"),
        (f"operator: resident memory with {n} campaigns, peak", "< 300 MiB",
         _get(scale, "rss", "peakMiB"), " MiB"),
        (f"operator: steady state with {n} campaigns, requests/s to the API server", "(report)",
         _get(scale, *steady, "apiserverRequestsPerSecond"), "/s"),
        (f"operator: steady state with {n} campaigns, PostgreSQL transactions/s", "(report)",
         _get(scale, *steady, "postgresTransactionsPerSecond"), "/s"),
        (f"operator: {n} campaigns deleted (reclaimPolicy Delete), all gone", "(report)",
         _get(scale, "delete", "allGoneSeconds"), " s"),
    ]  # fmt: skip


def migrate_rows(migrate: dict[str, Any]) -> list[tuple[str, str, Any, str]]:
    """A new campaign's first migrate as the database fills (bench_migrate_at_scale.py)."""
    last = (migrate.get("buckets") or [{}])[-1]
    n = last.get("schemas", 1000)
    return [
        (f"operator: a new campaign's first migrate with {n} campaign schemas, PostgreSQL CPU",
         "(report)", _get(last, "operator", "freshCpuMs"), " ms"),
        (f"operator: that migrate's CPU over the previous code's, all {n} schemas", "(report)",
         _get(migrate, "totals", "operatorOverOldCpu"), ""),
    ]  # fmt: skip


def router_rows(router: dict[str, Any]) -> list[tuple[str, str, Any, str]]:
    """A LabelerPool's router (bench_router.py, issue 13)."""
    tp, fs = ("throughput",), ("fairShare", "summary")
    return [
        ("router: labels/s through the router over direct to the worker, 32 labelers",
         ">= 0.8", _get(router, *tp, "routedOverDirect", "median"), ""),
        ("router: next task's p99 through the router, 32 paced labelers", "< 20 ms",
         _get(router, *tp, "routedClaimP99Ms", "medianOverRounds"), " ms"),
        ("router: 1:2:1 pool, largest share error per window while all have work", "(report)",
         _get(router, *fs, "whileAllHadWork", "maxAbsErrorPoints"), " points"),
        ("router: 1:2:1 pool, shares over the whole phase while all have work", "25/50/25 %",
         _get(router, *fs, "wholePhaseShares", "whileAllHadWork"), ""),
    ]  # fmt: skip


def _find(doc: Any, key: str) -> Any:
    """The first value under `key` anywhere in a results document (depth first)."""
    if isinstance(doc, dict):
        if key in doc:
            return doc[key]
        children = list(doc.values())
    elif isinstance(doc, list):
        children = doc
    else:
        return None
    for child in children:
        found = _find(child, key)
        if found is not None:
            return found
    return None


def source_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """When, under what load and with what PostgreSQL durability each results file was made."""
    lines = ["| results file | measured | load average | PostgreSQL fsync |", "|---|---|---|---|"]
    for name, doc in sorted(results.items()):
        machine_info = _find(doc, "machine")
        info = machine_info if isinstance(machine_info, dict) else {}
        when = info.get("date") or _find(doc, "date") or "(not recorded)"
        load = info.get("loadAverageAtStart") or info.get("loadAverage") or "(not recorded)"
        fsync = _find(doc, "fsync") or _find(doc, "postgresDurability") or "(not recorded)"
        lines.append(f"| {name}.json | {when} | {load} | {fsync} |")
    return lines


def write_summary(info: dict[str, Any], results: dict[str, dict[str, Any]]) -> Path:
    store, worker, op = (results.get(name, {}) for name in ("store", "worker", "operator"))
    rows = summary_rows(store, worker, op)
    rows += quality_rows(results)
    rows += scale_rows(results.get("campaigns_at_scale", {}))
    rows += migrate_rows(results.get("migrate_at_scale", {}))
    rows += router_rows(results.get("router", {}))
    lines = [
        "# labelops benchmarks",
        "",
        f"Written {info['date']} on {info['cpu']}, {info['cpus']} CPUs, "
        f"{info['memoryGiB']} GiB, kernel {info['kernel']}, Python {info['python']}. "
        f"Load average at start {info['loadAverageAtStart']}, at end "
        f"{info.get('loadAverageAtEnd', info['loadAverageAtStart'])}. Each figure comes from "
        "the results file of its benchmark; the table at the end says when each was measured.",
        "",
        _speed_note(worker),
        "",
        "| figure | target | measured |",
        "|---|---|---|",
    ]
    for name, target, value, unit in rows:
        shown = "not measured (see the JSON for the error)" if value is None else f"{value}{unit}"
        lines.append(f"| {name} | {target} | {shown} |")
    lines += ["", *source_lines(results)]
    path = RESULTS / "SUMMARY.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def load_results() -> dict[str, dict[str, Any]]:
    """The results files already in bench/results/, by benchmark name (for --summary-only)."""
    results: dict[str, dict[str, Any]] = {}
    for path in sorted(RESULTS.glob("*.json")):
        if path.stem != "machine":
            results[path.stem] = json.loads(path.read_text())
    return results


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    if sys.argv[1:] == ["--summary-only"]:
        # Rebuild SUMMARY.md from the results files as they are (each says when and where it
        # was measured); runs nothing.
        path = write_summary(machine(), load_results())
        print(path.read_text())
        return 0
    info = machine()
    up = stack.ensure_up()
    try:
        results = {
            "store": run_script("store", up.env, []),
            "worker": run_script("worker", up.env, []),
            "operator": run_script("operator", up.env, []),
            # Data quality on real crowd answers through the worker's API (issue 11).
            "crowd_replay": run_script("crowd_replay", up.env, []),
            # Offline on the same crowd data: every consolidation method (issue 11).
            "consolidation": run_script("consolidation", up.env, []),
            # Models in the loop on the SMS Spam Collection (issue 10).
            "active_learning": run_script("active_learning", up.env, []),
            # Ingest of items and predictions, export (issue 14), against the previous commit.
            "ingest_export": run_script("ingest_export", up.env, []),
            # 1,000 campaigns applied at once, on a private stack it starts (issue 14).
            "campaigns_at_scale": run_script("campaigns_at_scale", up.env, []),
            # A LabelerPool's router vs direct to the worker, and its 1:2:1 shares (issue 13).
            "router": run_script("router", up.env, []),
        }
    finally:
        if up.started:  # leave a stack that was already up as it was
            stack.down(components=up.started)
    info["loadAverageAtEnd"] = [round(x, 2) for x in os.getloadavg()]
    (RESULTS / "machine.json").write_text(json.dumps(info, indent=2) + "\n")
    path = write_summary(info, results)
    print(path.read_text())
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
