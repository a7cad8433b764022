"""The operator at a thousand campaigns (issue 14): applied at once, held, deleted.

    python bench/bench_campaigns_at_scale.py                  # 1,000 campaigns
    python bench/bench_campaigns_at_scale.py --campaigns 100 --window 60
    python bench/bench_campaigns_at_scale.py --operator-source /tmp/old/operator ...
        # the operator code of another commit (`git archive <commit> operator | tar -x -C
        # /tmp/old`), to compare old and new on the same machine

Runs on a stack of its own (--stack-dir, default .stack/scale; started if it is not running
and stopped afterwards unless --keep-stack) so a thousand campaigns never disturb tests on
the shared stack. The operator runs as its own process (`labelops operator --namespace`),
authenticated as a ServiceAccount bound to exactly the rules of operator/rbac.py, so the
API server can tell its requests from everyone else's: they are the only ones of flow schema
"service-accounts" (controllers and kwok are exempt or have their own schemas).

Measures, writes bench/results/campaigns_at_scale.json and prints it:
  ready         seconds from the first apply until every campaign is Ready=True for its
                generation (kstatus's reading), median and p95 per campaign; the operator's
                API server requests per campaign, and every client's by verb and resource
                (apiserver_request_total: the controllers' and kwok's are in it too);
  rss           the operator's VmRSS sampled each second: peak (VmHWM) and steady (mean and
                max over the steady-state window);
  steadyState   over --window seconds, starting --settle seconds after all are Ready: requests
                per second the operator sent the API server (apiserver_flowcontrol_dispatched_
                requests_total of its flow schema), transactions per second PostgreSQL committed
                in the operator's database (pg_stat_database; no workers run here, so they are the
                operator's), progress reads per second and log lines per second of the operator;
  delete        seconds from deleting every campaign (reclaimPolicy Delete: schema, role and
                topics dropped) until all are gone.

Campaigns are small: one worker replica, ten items, one partition per topic (3 topics each).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import psycopg
import yaml
from kubernetes import client, config, watch
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO))  # devstack/ is a package of the repository
sys.path.insert(0, str(REPO / "bench"))

from devstack import kubeapply, stack  # noqa: E402  (needs the paths above)
from devstack.procs import (  # noqa: E402
    Started,
    free_port,
    port_open,
    start_process,
    stop_pidfile,
    wait_until,
)
from labelops.api.campaign import GROUP, PLURAL, VERSION  # noqa: E402
from labelops.operator.rbac import policy_rules  # noqa: E402
from run import machine  # noqa: E402  (bench/run.py)

RESULTS = REPO / "bench" / "results" / "campaigns_at_scale.json"
OPERATOR_FLOW_SCHEMA = "service-accounts"
ACCOUNT = "labelops-operator"
TARGETS = {"allReadySeconds": 300, "rssMiB": 300}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=1000, help="campaigns applied at once")
    parser.add_argument(
        "--ready-timeout", type=float, default=900, help="seconds to wait for all Ready"
    )
    parser.add_argument(
        "--settle", type=float, default=120, help="seconds after all Ready before the window"
    )
    parser.add_argument(
        "--window",
        type=float,
        default=300,
        help="steady-state seconds measured (300 covers one resync of every campaign)",
    )
    parser.add_argument("--delete-timeout", type=float, default=900)
    parser.add_argument(
        "--stack-dir",
        type=Path,
        default=Path(os.environ.get("LABELOPS_SCALE_STACK_DIR") or REPO / ".stack" / "scale"),
        help="a private stack (started here if it is not up)",
    )
    parser.add_argument("--keep-stack", action="store_true", help="leave the stack running")
    parser.add_argument(
        "--operator-source",
        type=Path,
        default=REPO / "operator",
        help="the operator/ folder whose code runs (e.g. an export of an older commit, to "
        "compare old and new on the same stack)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


# --- what is applied ------------------------------------------------------------------


def campaign_docs(namespace: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"{name}-labelers",
            "namespace": namespace,
            "labels": {"labelops.dev/campaign": name},
        },
        "type": "Opaque",
        "stringData": {"alice": secrets.token_urlsafe(12)},
    }
    campaign = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LabelingCampaign",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "task": {
                "type": "classification",
                "instructions": "Is this message spam?",
                "choices": ["ham", "spam"],
            },
            "target": {"items": 10, "labelsPerItem": 1},
            "workers": {"replicas": 1},
            "kafka": {"partitions": 1, "replicationFactor": 1, "retention": "1d"},
            "labelers": {"tokenSecretRef": {"name": f"{name}-labelers"}},
            "reclaimPolicy": "Delete",
        },
    }
    return secret, campaign


def operator_identity(api: client.ApiClient, namespace: str, admin_kubeconfig: str) -> Path:
    """A ServiceAccount with exactly rbac.RULES (plus what namespaced mode reads); returns
    a kubeconfig that authenticates as it."""
    rbac, core = client.RbacAuthorizationV1Api(api), client.CoreV1Api(api)
    role_name = f"{ACCOUNT}-{namespace}"
    rules = policy_rules()
    rules.append({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]})
    rbac.create_cluster_role(cast(Any, {"metadata": {"name": role_name}, "rules": rules}))
    core.create_namespaced_service_account(namespace, cast(Any, {"metadata": {"name": ACCOUNT}}))
    rbac.create_cluster_role_binding(
        cast(
            Any,
            {
                "metadata": {"name": role_name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role_name,
                },
                "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
            },
        )
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=4 * 3600)
    )
    status = core.create_namespaced_service_account_token(ACCOUNT, namespace, request).status
    assert status is not None
    token = status.token
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    server = dict(cluster["cluster"])
    if "certificate-authority" in server:  # relative to the admin file
        ca = Path(admin_kubeconfig).parent / server["certificate-authority"]
        server["certificate-authority"] = str(ca.resolve())
    path = Path(admin_kubeconfig).parent / f"{role_name}.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stack", "cluster": server}],
                "users": [{"name": ACCOUNT, "user": {"token": token}}],
                "contexts": [{"name": ACCOUNT, "context": {"cluster": "stack", "user": ACCOUNT}}],
                "current-context": ACCOUNT,
            }
        )
    )
    return path


def remove_identity(api: client.ApiClient, namespace: str) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
        try:
            delete(f"{ACCOUNT}-{namespace}")
        except client.ApiException as err:
            if err.status != 404:
                raise


# --- what is watched ------------------------------------------------------------------


@dataclass
class Campaigns:
    """Per campaign, when it was first seen Ready for its generation and whether it exists;
    one watch, resumed from its resourceVersion (never a re-list every few seconds)."""

    api: client.ApiClient
    namespace: str
    ready_at: dict[str, float] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def _ready(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
        )
        return ready and status.get("observedGeneration") == obj["metadata"]["generation"]

    def _run(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        version: str | None = None
        while not self._stop.is_set():
            kwargs: dict[str, Any] = {"timeout_seconds": 60, "allow_watch_bookmarks": True}
            if version:
                kwargs["resource_version"] = version
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    **kwargs,
                ):
                    obj = event["object"]
                    version = obj["metadata"].get("resourceVersion") or version
                    if event["type"] == "BOOKMARK":
                        continue
                    self._seen(event["type"], obj)
                    if self._stop.is_set():
                        return
            except client.ApiException as err:
                if err.status != 410:
                    raise
                version = None  # expired: start over from a list

    def _seen(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        with self._changed:
            if kind == "DELETED":
                self.present.discard(name)
            else:
                self.present.add(name)
                if name not in self.ready_at and self._ready(obj):
                    self.ready_at[name] = time.monotonic()
            self._changed.notify_all()

    def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 5))
        return True

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Sampler:
    """The operator's VmRSS and VmHWM each second, from /proc."""

    pid: int
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            values = {}
            for line in status.splitlines():
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(value.split()[0])
            self.samples.append((time.monotonic(), values["VmRSS"], values["VmHWM"]))

    def between(self, start: float, end: float) -> list[int]:
        return [rss for at, rss, _ in self.samples if start <= at <= end]

    def peak_kib(self) -> int:
        return max((hwm for _, _, hwm in self.samples), default=0)

    def stop(self) -> None:
        self._stop.set()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """A process's CPU with its children's: the exited ones it waited for (cutime, cstime)
    and the live ones (PostgreSQL's backends are the postmaster's children)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if stat.parent.name == str(pid):
            ticks += sum(int(f) for f in fields[11:15])
        elif fields[1] == str(pid):
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def stack_cpu(stack_dir: Path, operator_pid: int) -> dict[str, float]:
    """CPU seconds so far of each process of the stack (its pidfiles), the operator's and
    this benchmark's own: where a run's CPU goes on a machine of 2 cores."""
    found: dict[str, float] = {}
    for pidfile in sorted(stack_dir.glob("*.pid")):
        try:
            found[pidfile.stem.removeprefix("kube-")] = tree_cpu_seconds(
                int(pidfile.read_text().strip())
            )
        except (OSError, ValueError):
            continue
    found["operator"] = cpu_seconds(operator_pid)
    usage = os.times()
    found["benchmark"] = usage.user + usage.system
    return found


def cpu_breakdown(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, Any]:
    spent = {name: round(after[name] - before.get(name, 0.0), 1) for name in after}
    total = sum(spent.values())
    return {
        "cpuSecondsByProcess": dict(sorted(spent.items(), key=lambda kv: -kv[1])),
        "cpuSecondsTotal": round(total, 1),
        "cpuBusyShareOfAllCores": round(total / max(1e-9, seconds * (os.cpu_count() or 1)), 2),
    }


# --- counters ---------------------------------------------------------------------------


def scrape(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def apiserver_metrics(api: client.ApiClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    params = api.param_serialize(
        method="GET",
        resource_path="/metrics",
        header_params={"Accept": "text/plain"},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*params, _request_timeout=(5, 30))
    return scrape(response.read().decode())


def etcd_seconds(api: client.ApiClient) -> tuple[float, float]:
    """(seconds, requests) the API server has spent on etcd: how busy the control plane is."""
    samples = apiserver_metrics(api)
    total = sum(v for _, v in samples.get("etcd_request_duration_seconds_sum", []))
    count = sum(v for _, v in samples.get("etcd_request_duration_seconds_count", []))
    return total, count


def requests_by_verb(api: client.ApiClient) -> dict[str, float]:
    """Requests the API server served by "VERB resource[/subresource]", from every client
    (the operator, but also the controllers and kwok; watches are counted when they end)."""
    totals: dict[str, float] = {}
    for labels, value in apiserver_metrics(api).get("apiserver_request_total", []):
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        key = f"{labels.get('verb', '')} {resource}"
        totals[key] = totals.get(key, 0.0) + value
    return totals


def per_campaign_breakdown(
    before: dict[str, float], after: dict[str, float], campaigns: int, least: float = 0.5
) -> dict[str, float]:
    """Requests per campaign by verb and resource, largest first, those of at least `least`."""
    deltas = {k: (v - before.get(k, 0.0)) / campaigns for k, v in after.items()}
    return {k: round(v, 1) for k, v in sorted(deltas.items(), key=lambda kv: -kv[1]) if v >= least}


def apiserver_requests(api: client.ApiClient) -> dict[str, float]:
    """Requests dispatched per flow schema, as the API server counts them."""
    samples = apiserver_metrics(api)
    totals: dict[str, float] = {}
    for labels, value in samples.get("apiserver_flowcontrol_dispatched_requests_total", []):
        schema = labels.get("flow_schema", "")
        totals[schema] = totals.get(schema, 0.0) + value
    return totals


def operator_metrics(port: int) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        samples = scrape(response.read().decode())
    reconciles: dict[str, float] = {}
    for labels, value in samples.get("labelops_reconciles_total", []):
        key = f"{labels['handler']}:{labels['outcome']}"
        reconciles[key] = reconciles.get(key, 0.0) + value
    reads = sum(v for _, v in samples.get("labelops_progress_reads_total", []))
    steps = {}
    for suffix in ("sum", "count"):
        for labels, value in samples.get(f"labelops_pass_step_seconds_{suffix}", []):
            steps[f"step.{labels['step']}.{suffix}"] = value
    return {
        "progressReads": reads,
        **{f"reconciles.{k}": v for k, v in reconciles.items()},
        **steps,
    }


def pass_steps(metrics: dict[str, float]) -> dict[str, float]:
    """Mean seconds of each step of the operator's reconcile passes (an operator that does
    not time its steps, an older one, gives none)."""
    return {
        key.split(".")[1]: round(metrics[key] / metrics[key.replace(".sum", ".count")], 2)
        for key in sorted(metrics)
        if key.startswith("step.")
        and key.endswith(".sum")
        and metrics.get(key.replace(".sum", ".count"))
    }


def postgres_transactions(dsn: str) -> tuple[int, int]:
    """(committed + rolled back transactions of the database, its client sessions)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        ).fetchone()
        sessions = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None and sessions is not None
    return int(row[0]), int(sessions[0])


def line_count(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


# --- the run ----------------------------------------------------------------------------


def start_operator(
    env: dict[str, str], namespace: str, state_dir: Path, source: Path
) -> tuple[Started, int]:
    (state_dir / "scale-operator.log").unlink(missing_ok=True)
    health, metrics_port = free_port(), free_port()
    started = start_process(
        "scale-operator",
        [sys.executable, "-m", "labelops.cli", "operator", "--namespace", namespace],
        state_dir,
        env={
            **env,
            # Ahead of the installed package: the code under test.
            "PYTHONPATH": str(source.resolve()),
            "LABELOPS_HEALTH_PORT": str(health),
            "LABELOPS_METRICS_PORT": str(metrics_port),
        },
    )
    wait_until(started, lambda: port_open(health), 60, "serving /healthz")
    return started, metrics_port


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * (len(ordered) - 1) + 0.5))]


def main() -> None:
    args = parse_args()
    log(f"stack in {args.stack_dir}")
    up = stack.ensure_up(state_dir=args.stack_dir)
    env = up.env
    results: dict[str, Any] = {"machine": machine(), "campaigns": args.campaigns}
    try:
        run(args, env, results)
    finally:
        if up.started and not args.keep_stack:
            stack.down(args.stack_dir, components=up.started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def run(args: argparse.Namespace, env: dict[str, str], results: dict[str, Any]) -> None:
    api = config.new_client_from_config(config_file=env["KUBECONFIG"])
    namespace = f"scale-{secrets.token_hex(3)}"
    state_dir = args.stack_dir / "bench"
    state_dir.mkdir(parents=True, exist_ok=True)
    kubeapply.install_crds(api, REPO / "crds")
    kubeapply.ensure_namespace(api, namespace)
    kubeconfig = operator_identity(api, namespace, env["KUBECONFIG"])
    # The stack's backends as its env names them (Kafka credentials included), and the
    # API server as the operator's ServiceAccount.
    operator_env = {k: v for k, v in env.items() if k.startswith("LABELOPS_")}
    operator_env["KUBECONFIG"] = str(kubeconfig)
    operator, metrics_port = start_operator(
        operator_env, namespace, state_dir, args.operator_source
    )
    results["operatorSource"] = str(args.operator_source)
    operator_log = state_dir / "scale-operator.log"
    results["namespace"] = namespace
    sampler = Sampler(operator.pid)
    sampler.start()
    watched = Campaigns(api, namespace)
    watched.start()
    names = [f"c{i:04d}" for i in range(args.campaigns)]
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    try:
        log(f"applying {len(names)} campaigns at once")
        applied_at: dict[str, float] = {}

        def apply_one(name: str) -> None:
            secret, campaign = campaign_docs(namespace, name)
            core.create_namespaced_secret(namespace, cast(client.V1Secret, secret))
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, campaign)
            applied_at[name] = time.monotonic()

        cpu_before = cpu_seconds(operator.pid)
        stack_cpu_before = stack_cpu(args.stack_dir, operator.pid)
        requests_before = apiserver_requests(api).get(OPERATOR_FLOW_SCHEMA, 0.0)
        verbs_before = requests_by_verb(api)
        etcd_before = etcd_seconds(api)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(apply_one, names))
        applied = time.monotonic() - started
        log(f"applied in {applied:.1f}s; waiting for Ready")
        progress_at = time.monotonic()

        def all_ready() -> bool:
            nonlocal progress_at
            if time.monotonic() - progress_at > 30:
                progress_at = time.monotonic()
                log(f"{len(watched.ready_at)}/{len(names)} Ready")
            return len(watched.ready_at) >= len(names)

        ready = watched.wait(all_ready, args.ready_timeout)
        ready_seconds = [watched.ready_at[n] - applied_at[n] for n in watched.ready_at]
        results["ready"] = {
            "applySeconds": round(applied, 1),
            "allReady": ready,
            "readyCount": len(watched.ready_at),
            "allReadySeconds": round(max(watched.ready_at.values()) - started, 1)
            if ready
            else None,
            "perCampaignMedianSeconds": round(statistics.median(ready_seconds), 1)
            if ready_seconds
            else None,
            "perCampaignP95Seconds": round(percentile(ready_seconds, 0.95), 1)
            if ready_seconds
            else None,
            "operatorCpuSeconds": round(cpu_seconds(operator.pid) - cpu_before, 1),
            # What provisioning costs the control plane: the operator's requests until all
            # were Ready (or the timeout), per campaign.
            "apiserverRequestsPerCampaign": round(
                (apiserver_requests(api).get(OPERATOR_FLOW_SCHEMA, 0.0) - requests_before)
                / len(names),
                1,
            ),
            "targetSeconds": TARGETS["allReadySeconds"],
            # Where a pass spends its time (waiting: for a pass slot and the campaign's lock).
            "passStepMeanSeconds": pass_steps(operator_metrics(metrics_port)),
            # Every client's requests (controllers' and kwok's too), to see where they go.
            "allClientsRequestsPerCampaignByVerb": per_campaign_breakdown(
                verbs_before, requests_by_verb(api), len(names)
            ),
        }
        etcd_after = etcd_seconds(api)
        results["controlPlaneWhileApplying"] = {
            **cpu_breakdown(
                stack_cpu_before,
                stack_cpu(args.stack_dir, operator.pid),
                time.monotonic() - started,
            ),
            "etcdRequestMeanSeconds": round(
                (etcd_after[0] - etcd_before[0]) / max(1.0, etcd_after[1] - etcd_before[1]), 3
            ),
            "etcdRequests": int(etcd_after[1] - etcd_before[1]),
            "loadAverage": [round(x, 2) for x in os.getloadavg()],
        }
        log(f"ready: {results['ready']} {results['controlPlaneWhileApplying']}")
        if not ready:
            return
        _, sessions = postgres_transactions(env["LABELOPS_POSTGRES_DSN"])
        log(f"settling {args.settle:.0f}s")
        time.sleep(args.settle)  # a benchmark's wait for steady state, not a test
        results["steadyState"] = steady_state(
            args, env, api, operator.pid, metrics_port, operator_log, sampler
        )
        results["steadyState"]["postgresSessionsAfterReady"] = sessions
        log(f"steady state: {results['steadyState']}")
    finally:
        results["rss"] = {
            "peakMiB": round(sampler.peak_kib() / 1024, 1),
            **results.get("steadyState", {}).pop("rss", {}),
            "targetMiB": TARGETS["rssMiB"],
        }
        sampler.stop()
        results["delete"] = delete_all(custom, namespace, names, watched, args.delete_timeout)
        log(f"delete: {results['delete']}")
        watched.stop()
        results["operatorLogLines"] = line_count(operator_log)
        stop_pidfile(state_dir / "scale-operator.pid", grace=20)
        core.delete_namespace(namespace)
        remove_identity(api, namespace)
    results["targetsMet"] = {
        "allReadyWithin300s": bool(
            results["ready"].get("allReadySeconds") is not None
            and results["ready"]["allReadySeconds"] <= TARGETS["allReadySeconds"]
        ),
        "rssUnder300MiB": results["rss"]["peakMiB"] < TARGETS["rssMiB"],
    }


def steady_state(
    args: argparse.Namespace,
    env: dict[str, str],
    api: client.ApiClient,
    pid: int,
    metrics_port: int,
    operator_log: Path,
    sampler: Sampler,
) -> dict[str, Any]:
    dsn = env["LABELOPS_POSTGRES_DSN"]
    log(f"steady-state window of {args.window:.0f}s")
    begin = time.monotonic()
    requests_before = apiserver_requests(api)
    verbs_before = requests_by_verb(api)
    xacts_before, _ = postgres_transactions(dsn)
    metrics_before = operator_metrics(metrics_port)
    lines_before = line_count(operator_log)
    cpu_before = cpu_seconds(pid)
    time.sleep(args.window)  # the measured window
    cpu_after = cpu_seconds(pid)
    lines_after = line_count(operator_log)
    metrics_after = operator_metrics(metrics_port)
    xacts_after, sessions = postgres_transactions(dsn)
    requests_after = apiserver_requests(api)
    verbs_after = requests_by_verb(api)
    end = time.monotonic()
    seconds = end - begin
    by_verb = {
        k: round((v - verbs_before.get(k, 0.0)) / seconds, 2)
        for k, v in sorted(verbs_after.items(), key=lambda kv: verbs_before.get(kv[0], 0) - kv[1])
        if (v - verbs_before.get(k, 0.0)) / seconds >= 0.05
    }
    by_schema = {
        schema: round((requests_after.get(schema, 0.0) - before) / seconds, 2)
        for schema, before in requests_before.items()
        if requests_after.get(schema, 0.0) > before
    }
    rss = sampler.between(begin, end)
    # The bench's own two readings are transactions of the database too.
    xacts = xacts_after - xacts_before - 2
    return {
        "windowSeconds": round(seconds, 1),
        "apiserverRequestsPerSecond": by_schema.get(OPERATOR_FLOW_SCHEMA, 0.0),
        "apiserverRequestsPerSecondByFlowSchema": by_schema,
        "allClientsRequestsPerSecondByVerb": by_verb,
        "postgresTransactionsPerSecond": round(xacts / seconds, 2),
        "postgresSessions": sessions,
        "progressReadsPerSecond": round(
            (metrics_after["progressReads"] - metrics_before["progressReads"]) / seconds, 2
        ),
        "reconcilesInWindow": {
            k.removeprefix("reconciles."): v - metrics_before.get(k, 0.0)
            for k, v in metrics_after.items()
            if k.startswith("reconciles.") and v > metrics_before.get(k, 0.0)
        },
        "operatorCpuPercent": round(100 * (cpu_after - cpu_before) / seconds, 1),
        "operatorLogLinesPerSecond": round((lines_after - lines_before) / seconds, 2),
        "rss": {
            "steadyMeanMiB": round(statistics.mean(rss) / 1024, 1) if rss else None,
            "steadyMaxMiB": round(max(rss) / 1024, 1) if rss else None,
        },
    }


def delete_all(
    custom: client.CustomObjectsApi,
    namespace: str,
    names: list[str],
    watched: Campaigns,
    timeout: float,
) -> dict[str, Any]:
    log("deleting every campaign")
    started = time.monotonic()

    def delete_one(name: str) -> None:
        try:
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except client.ApiException as err:
            if err.status != 404:
                raise

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(delete_one, names))
    gone = watched.wait(lambda: not watched.present, timeout)
    return {
        "allGone": gone,
        "allGoneSeconds": round(time.monotonic() - started, 1) if gone else None,
        "remaining": len(watched.present),
    }


if __name__ == "__main__":
    main()
