"""Benchmark of the operator on the real local stack.

    python bench/bench_operator.py            # uses the environment, else .stack/env

Measures, and prints as JSON (also written to bench/results/operator.json):
  applyToReady      seconds from applying one campaign to Ready=True for its generation,
                    --single times one after another: median, min, max;
  bulk              --bulk campaigns applied at once: seconds until all are Ready, with the
                    median and p95 of per-campaign apply-to-Ready;
  operatorRss       resident memory of the operator process (VmRSS, VmHWM) with the bulk
                    campaigns Ready and their progress being read.

The operator runs as `labelops operator --namespace <bench namespace>`, its own process,
so its memory is its own. Campaigns use reclaimPolicy Delete and are removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config, watch

from devstack import kubeapply, stack
from devstack.procs import (
    Started,
    free_port,
    port_open,
    start_process,
    stop_pidfile,
    wait_until,
)
from labelops.api.campaign import GROUP, PLURAL, VERSION

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "helpfulness-pairwise.yaml"
RESULTS = REPO / "bench" / "results" / "operator.json"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=10, help="sequential campaigns to time")
    parser.add_argument("--bulk", type=int, default=100, help="campaigns applied at once")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for Ready")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def stack_env() -> dict[str, str]:
    keys = ("KUBECONFIG", "LABELOPS_KAFKA_BOOTSTRAP", "LABELOPS_POSTGRES_DSN")
    if all(os.environ.get(k) for k in keys):
        return {k: os.environ[k] for k in keys}
    env = stack.read_env()
    missing = [k for k in keys if not env.get(k)]
    if missing:
        raise SystemExit(f"no stack: {missing} unset and not in .stack/env; run `make stack-up`")
    return env


def campaign_docs(namespace: str, name: str) -> list[dict[str, Any]]:
    docs = kubeapply.load_documents(EXAMPLE)
    secret = deepcopy(next(d for d in docs if d["kind"] == "Secret"))
    campaign = deepcopy(next(d for d in docs if d["kind"] == "LabelingCampaign"))
    for doc in (secret, campaign):
        doc["metadata"]["namespace"] = namespace
    secret["metadata"]["name"] = f"{name}-labelers"
    secret["metadata"].setdefault("labels", {})["labelops.dev/campaign"] = name
    campaign["metadata"]["name"] = name
    spec = campaign["spec"]
    spec["labelers"]["tokenSecretRef"]["name"] = f"{name}-labelers"
    spec["reclaimPolicy"] = "Delete"
    # One simulated pod each: the stack's single kwok node holds 110 pods.
    spec["workers"]["replicas"] = 1
    return [secret, campaign]


class ReadyWatch:
    """Records, per campaign, when it was first seen Ready for its current generation."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.ready_at: dict[str, float] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _ready(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
        )
        return ready and status.get("observedGeneration") == obj["metadata"]["generation"]

    def _run(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        while not self._stop.is_set():
            stream = watch.Watch().stream(
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                timeout_seconds=10,
            )
            for event in stream:
                obj = event["object"]
                name = obj["metadata"]["name"]
                if self._ready(obj) and name not in self.ready_at:
                    with self._changed:
                        self.ready_at[name] = time.monotonic()
                        self._changed.notify_all()
                if self._stop.is_set():
                    return

    def wait(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not all(n in self.ready_at for n in names):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = [n for n in names if n not in self.ready_at]
                    raise SystemExit(f"not Ready within {timeout:.0f}s: {missing[:10]}...")
                self._changed.wait(remaining)

    def stop(self) -> None:
        self._stop.set()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memoryGiB": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "note": "shared machine: other builds and tests may run concurrently",
    }


def start_operator(env: dict[str, str], namespace: str, state_dir: Path) -> Started:
    (state_dir / "bench-operator.log").unlink(missing_ok=True)  # one run per log
    health = free_port()
    started = start_process(
        "bench-operator",
        [sys.executable, "-m", "labelops.cli", "operator", "--namespace", namespace],
        state_dir,
        env={
            **env,
            "LABELOPS_HEALTH_PORT": str(health),
            "LABELOPS_METRICS_PORT": str(free_port()),
        },
    )
    wait_until(started, lambda: port_open(health), 60, "serving /healthz")
    return started


def delete_all(api: client.ApiClient, namespace: str, names: list[str], timeout: float) -> None:
    custom = client.CustomObjectsApi(api)
    for name in names:
        try:
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except client.ApiException as err:
            if err.status != 404:
                raise
    deadline = time.monotonic() + timeout
    remaining = set(names)
    while remaining and time.monotonic() < deadline:
        found = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        items = cast(dict[str, Any], found)["items"]
        remaining = {o["metadata"]["name"] for o in items} & remaining
        if remaining:
            time.sleep(1)  # a benchmark's cleanup, not a measurement
    if remaining:
        log(f"warning: {len(remaining)} campaigns still deleting after {timeout:.0f}s")


def main() -> None:
    args = parse_args()
    env = stack_env()
    api = config.new_client_from_config(config_file=env["KUBECONFIG"])
    namespace = f"bench-operator-{secrets.token_hex(3)}"
    state_dir = stack.default_state_dir() / "bench"
    kubeapply.install_crds(api, REPO / "crds")
    kubeapply.ensure_namespace(api, namespace)
    operator = start_operator(env, namespace, state_dir)
    results: dict[str, Any] = {"machine": machine(), "namespace": namespace}
    readiness = ReadyWatch(api, namespace)
    created: list[str] = []
    try:
        log(f"{args.single} campaigns, one at a time")
        single = []
        for i in range(args.single):
            name = f"single-{i}"
            started = time.monotonic()
            kubeapply.apply(api, campaign_docs(namespace, name))
            created.append(name)
            readiness.wait([name], args.timeout)
            single.append(readiness.ready_at[name] - started)
        results["applyToReady"] = {
            "campaigns": args.single,
            "medianSeconds": round(statistics.median(single), 3),
            "minSeconds": round(min(single), 3),
            "maxSeconds": round(max(single), 3),
            "targetSeconds": 3,
        }
        delete_all(api, namespace, created, args.timeout)
        created.clear()

        log(f"{args.bulk} campaigns applied at once")
        names = [f"bulk-{i}" for i in range(args.bulk)]
        applied_at: dict[str, float] = {}

        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)

        def apply_one(name: str) -> None:
            # Plain creates: the bench times the operator, not client-side discovery.
            secret, campaign = campaign_docs(namespace, name)
            core.create_namespaced_secret(namespace, cast(client.V1Secret, secret))
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, campaign)
            applied_at[name] = time.monotonic()

        cpu_before = cpu_seconds(operator.pid)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(apply_one, names))
        created += names
        applied = time.monotonic() - started
        readiness.wait(names, args.timeout)
        all_ready = max(readiness.ready_at[n] for n in names) - started
        each = sorted(readiness.ready_at[n] - applied_at[n] for n in names)
        results["bulk"] = {
            "campaigns": args.bulk,
            "applySeconds": round(applied, 3),
            "allReadySeconds": round(all_ready, 3),
            "perCampaignMedianSeconds": round(statistics.median(each), 3),
            "perCampaignP95Seconds": round(each[int(0.95 * (len(each) - 1))], 3),
            "operatorCpuSeconds": round(cpu_seconds(operator.pid) - cpu_before, 1),
            "targetSeconds": 60,
        }
        # Let the progress loop read every campaign a few times before reading memory.
        time.sleep(15)
        memory = rss_kib(operator.pid)
        results["operatorRss"] = {
            "campaigns": args.bulk,
            "rssMiB": round(memory["VmRSS"] / 1024, 1),
            "peakRssMiB": round(memory["VmHWM"] / 1024, 1),
        }
    finally:
        readiness.stop()
        log("cleaning up")
        delete_all(api, namespace, created, args.timeout)
        stop_pidfile(state_dir / "bench-operator.pid", grace=20)
        client.CoreV1Api(api).delete_namespace(namespace)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
