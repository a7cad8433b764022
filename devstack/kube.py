"""The Kubernetes control plane of the local stack: etcd, kube-apiserver, controller-manager,
scheduler and kwok (simulated nodes), all built from Go modules and run as local processes.

Binaries are built once from the tools modules under stack/k8s-tools into
`<cache>/bin/<component>-<version>/<component>`, so later runs only start them. kwokctl
(`runtime: binary`) orchestrates the processes: it writes the PKI, the component flags and
the admin kubeconfig, and records each process's pid under the state directory, which is
what `stop` kills.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.build_progress import BuildStep, BuildTimes, plan_message
from devstack.procs import (
    StackError,
    Started,
    free_port,
    log_tail,
    stop_pidfile,
    wait_until,
)

NAME = "kube"
TOOLS_DIR = Path(__file__).resolve().parents[1] / "stack" / "k8s-tools"
CLUSTER = "labelops"
# Sized for a thousand campaigns, each with a worker pod or two: ten simulated nodes of the
# kubelet's default 110 pods (kwok nodes cost a lease heartbeat each, nothing more).
NODES = 10
PODS_PER_NODE = 110
# A /16 as real clusters give Services (kube-apiserver's own default is a /24: 254 Services);
# clear of 10.0.0.0/16, where kwok's node template hands out pod CIDRs.
SERVICE_CIDR = "10.96.0.0/16"
# What a real control plane of this size raises from the defaults (apiserver 400/200 requests
# in flight; controller-manager 20 QPS, burst 30; scheduler 50/100; 5 concurrent syncs): a
# thousand campaigns' Deployments, Services and quotas must not queue behind throttling.
COMPONENT_FLAGS: dict[str, dict[str, str]] = {
    "kube-apiserver": {
        "service-cluster-ip-range": SERVICE_CIDR,
        "max-requests-inflight": "800",
        "max-mutating-requests-inflight": "400",
        # On top of the defaults: ownerReferences with blockOwnerDeletion need finalizers
        # rights on the owner, as on OpenShift and other hardened clusters, so the operator's
        # RBAC is tested against the stricter rule.
        "enable-admission-plugins": "OwnerReferencesPermissionEnforcement",
    },
    "kube-controller-manager": {
        "service-cluster-ip-range": SERVICE_CIDR,
        "kube-api-qps": "100",
        "kube-api-burst": "200",
        "concurrent-deployment-syncs": "10",
        "concurrent-replicaset-syncs": "10",
        # One instance: nothing to elect. With election on, an API server slowed by a busy
        # machine fails a lease renewal and the component exits, and nothing restarts it
        # (seen with 300 campaigns applied at once: pods stayed Pending for good).
        "leader-elect": "false",
    },
    "kube-scheduler": {"kube-api-qps": "100", "kube-api-burst": "200", "leader-elect": "false"},
}
GO_MIN = (1, 26)
GO_TARBALL_PATH = "/usr/local/go/bin/go"
GO_HINT = (
    "Go >= 1.26 is needed to build the control plane (Debian's golang-go is too old): "
    "download go1.26.x.linux-amd64.tar.gz from the Go downloads page, "
    "`tar -C /usr/local -xzf go1.26.*.linux-amd64.tar.gz`, and put /usr/local/go/bin on PATH"
)
BUILD_TIMEOUT = 3600.0
CREATE_TIMEOUT = 240.0
READY_TIMEOUT = 180.0
# The processes kwokctl starts, by the names of its pid and log files.
PROCESSES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok-controller",
)


@dataclass(frozen=True)
class GoBinary:
    """One command built from a tools module; `versioned_by` is the module that keys the cache."""

    component: str
    module: str
    package: str
    versioned_by: str


def _kubernetes_command(command: str) -> GoBinary:
    return GoBinary(command, "kubernetes", f"k8s.io/kubernetes/cmd/{command}", "k8s.io/kubernetes")


BINARIES: tuple[GoBinary, ...] = (
    *map(_kubernetes_command, ("kube-apiserver", "kube-controller-manager", "kube-scheduler")),
    _kubernetes_command("kubectl"),
    GoBinary("etcd", "etcd", "go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/server/v3"),
    GoBinary("kwok", "kwok", "sigs.k8s.io/kwok/cmd/kwok", "sigs.k8s.io/kwok"),
    GoBinary("kwokctl", "kwok", "sigs.k8s.io/kwok/cmd/kwokctl", "sigs.k8s.io/kwok"),
    GoBinary("helm", "helm", "helm.sh/helm/v3/cmd/helm", "helm.sh/helm/v3"),
    GoBinary("kstatus", "kstatus", ".", "sigs.k8s.io/cli-utils"),
)
# What starting the control plane needs; helm and kstatus are built when a test asks for
# them (tests/gotools.stack_tool), or by `python -m devstack build`, which fills the cache.
CONTROL_PLANE: tuple[str, ...] = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kwokctl",
    "kubectl",
)


# --- versions -------------------------------------------------------------------------------


def module_version(module_dir: Path, module_path: str) -> str:
    """The version of module_path that module_dir's go.mod requires (read without `go`)."""
    gomod = (module_dir / "go.mod").read_text()
    pattern = rf"^\s*(?:require\s+)?{re.escape(module_path)}\s+(v\S+)"
    found = re.search(pattern, gomod, flags=re.MULTILINE)
    if found is None:
        raise StackError(f"{module_dir / 'go.mod'} does not require {module_path}")
    return found.group(1)


def binary_version(binary: GoBinary) -> str:
    module_dir = TOOLS_DIR / binary.module
    version = module_version(module_dir, binary.versioned_by)
    if binary.package != ".":
        return version
    # A program whose source lives here: its own code is part of what is built, so it is
    # part of the key too, and an edit to main.go yields a new binary instead of a stale one.
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", *sorted(p.name for p in module_dir.glob("*.go"))):
        digest.update((module_dir / name).read_bytes())
    return f"{version}-{digest.hexdigest()[:10]}"


def kube_version() -> str:
    return module_version(TOOLS_DIR / "kubernetes", "k8s.io/kubernetes")


def binary_path(cache_dir: Path, binary: GoBinary) -> Path:
    component = binary.component
    return cache_dir / "bin" / f"{component}-{binary_version(binary)}" / component


# --- building -------------------------------------------------------------------------------


def ldflags(binary: GoBinary) -> str:
    flags = ["-s", "-w"]
    if binary.module == "kubernetes":
        # What hack/lib/version.sh sets for a release build: kubectl version, the server's
        # /version and kwokctl (which picks flags by the apiserver's version) all read it.
        version = kube_version()
        major, minor = version.removeprefix("v").split(".")[:2]
        for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
            flags += [
                f"-X {pkg}.gitVersion={version}",
                f"-X {pkg}.gitMajor={major}",
                f"-X {pkg}.gitMinor={minor}",
                f"-X {pkg}.gitTreeState=clean",
            ]
    elif binary.module == "helm":
        # Helm's Makefile does the same: without it `helm version` says only "v3.22".
        helm_dir = TOOLS_DIR / "helm"
        flags.append(f"-X helm.sh/helm/v3/internal/version.version={binary_version(binary)}")
        client_minor = module_version(helm_dir, "k8s.io/client-go").split(".")[1]
        for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
            flags += [f"-X {pkg}.k8sVersionMajor=1", f"-X {pkg}.k8sVersionMinor={client_minor}"]
    return " ".join(flags)


def go_tool() -> str:
    """The `go` command, checked to be new enough for the tools modules."""
    go = shutil.which("go")
    if go is None and os.access(GO_TARBALL_PATH, os.X_OK):
        go = GO_TARBALL_PATH  # installed from the tarball but not on this shell's PATH
    if go is None:
        raise StackError(f"kube: `go` is not installed or not on PATH. {GO_HINT}")
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    found = re.match(r"go(\d+)\.(\d+)", out.stdout.strip())
    if found is None or (int(found.group(1)), int(found.group(2))) < GO_MIN:
        raise StackError(f"kube: {go} is {out.stdout.strip() or 'unusable'}. {GO_HINT}")
    return go


@contextmanager
def _build_lock(bin_dir: Path) -> Iterator[None]:
    """One builder per cache: a second clone waits, then finds the binaries and skips."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    with (bin_dir / ".kube-build.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go_build(go: str, binary: GoBinary, target: Path, log: Path) -> float:
    """Build into a scratch dir beside the target and rename it in: never a half binary."""
    version = binary_version(binary)
    scratch = Path(tempfile.mkdtemp(prefix=f".{binary.component}-", dir=target.parent.parent))
    argv = [
        go,
        "build",
        "-trimpath",
        f"-ldflags={ldflags(binary)}",
        "-o",
        str(scratch / binary.component),
        binary.package,
    ]
    # Pure-Go static binaries, like upstream release builds; also needs no C compiler.
    env = {**os.environ, "CGO_ENABLED": "0"}
    started = time.monotonic()
    try:
        with log.open("ab") as out:
            out.write(f"\n=== {binary.component} {version}: {' '.join(argv)}\n".encode())
            out.flush()
            done = subprocess.run(
                argv,
                cwd=TOOLS_DIR / binary.module,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT,
                check=False,
            )
        if done.returncode != 0:
            raise StackError(
                f"kube: building {binary.component} {version} failed (go build exit "
                f"{done.returncode}). Log: {log}\n{log_tail(log)}"
            )
        shutil.rmtree(target.parent, ignore_errors=True)  # a leftover without its binary
        scratch.rename(target.parent)
    except subprocess.TimeoutExpired as exc:
        raise StackError(
            f"kube: building {binary.component} took over {BUILD_TIMEOUT:.0f}s. Log: {log}"
        ) from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.monotonic() - started
    with log.open("a") as out:
        out.write(f"=== built {binary.component} {version} in {seconds:.0f}s\n")
    return seconds


def _binary(component: str) -> GoBinary:
    binary = next((b for b in BINARIES if b.component == component), None)
    if binary is None:
        raise StackError(
            f"kube: no binary named {component!r}; known: {[b.component for b in BINARIES]}"
        )
    return binary


def ensure_binaries(cache_dir: Path, log_dir: Path, components: Sequence[str]) -> dict[str, Path]:
    """Build those of `components` that are not cached, one step at a time, saying on the
    terminal which step of how many runs, for how long, and how long it usually takes
    (durations of past builds: <cache>/build-times.json); return {component: path}."""
    wanted = [_binary(component) for component in components]
    paths = {b.component: binary_path(cache_dir, b) for b in wanted}
    if all(os.access(path, os.X_OK) for path in paths.values()):
        return paths
    go = go_tool()
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "kube-deps-build.log"  # "-deps": the stack summary lists no build logs
    times = BuildTimes.in_cache(cache_dir)
    with _build_lock(cache_dir / "bin"):
        # Counted under the lock: what another process built while we waited is done.
        missing = [b for b in wanted if not os.access(paths[b.component], os.X_OK)]
        if missing:
            _say(plan_message("kube", [b.component for b in missing], times))
        for index, binary in enumerate(missing, start=1):
            version = binary_version(binary)
            with BuildStep(
                times,
                binary.component,
                version,
                index=index,
                total=len(missing),
                prefix="kube",
                log=log,
            ):
                _go_build(go, binary, paths[binary.component], log)
    return paths


def ensure_binary(cache_dir: Path, log_dir: Path, component: str) -> Path:
    """Build one binary unless cached: a test that needs helm need not wait for the rest."""
    return ensure_binaries(cache_dir, log_dir, [component])[component]


def ensure_built(
    cache_dir: Path, log_dir: Path, components: Sequence[str] | None = None
) -> dict[str, Path]:
    """Build every missing binary of `components` (default: all, to fill the cache)."""
    names = components if components is not None else [b.component for b in BINARIES]
    return ensure_binaries(cache_dir, log_dir, names)


def _say(message: str) -> None:
    # stderr, unbuffered: a cold build takes many minutes and should not look like a hang.
    print(message, file=sys.stderr, flush=True)


# --- running --------------------------------------------------------------------------------


def _workdir(state_dir: Path) -> Path:
    """KWOK_WORKDIR: kwokctl keeps everything here instead of in ~/.kwok, one per state dir."""
    return state_dir / "kube"


def _cluster_dir(state_dir: Path) -> Path:
    return _workdir(state_dir) / "clusters" / CLUSTER


def _record_name(process: str) -> str:
    """Our name for a process's pid copy and log link: 'kube-' first, like the summary wants."""
    return process if process.startswith("kube-") else f"kube-{process}"


def kubeconfig_path(state_dir: Path) -> Path:
    return state_dir / "kubeconfig"


def _kwokctl_log(state_dir: Path) -> Path:
    return state_dir / "kube-kwokctl.log"


def _kwokctl_env(state_dir: Path, kubectl: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "KWOK_WORKDIR": str(_workdir(state_dir))}
    if kubectl is not None:
        # kwokctl runs the first kubectl on PATH (and would download one if there were none);
        # ours first means the client it probes with always matches the server.
        env["PATH"] = f"{kubectl.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def kwokctl_config(bins: dict[str, Path], state_dir: Path) -> dict[str, Any]:
    """kwokctl's cluster configuration: our binaries, our ports, RBAC and admission on."""
    options: dict[str, Any] = {
        "runtime": "binary",
        "kubeVersion": kube_version(),
        "securePort": True,
        "kubeAuthorization": True,  # --authorization-mode=Node,RBAC, SA token signing keys
        "kubeAdmission": True,  # the default admission plugins, ResourceQuota among them
        "bindAddress": "127.0.0.1",
        "cacheDir": str(_workdir(state_dir) / "cache"),
        "kubeApiserverBinary": str(bins["kube-apiserver"]),
        "kubeControllerManagerBinary": str(bins["kube-controller-manager"]),
        "kubeSchedulerBinary": str(bins["kube-scheduler"]),
        "kubectlBinary": str(bins["kubectl"]),
        "etcdBinary": str(bins["etcd"]),
        "kwokControllerBinary": str(bins["kwok"]),
    }
    # kwokctl's own port picker counts down from 32767, so two stacks starting at once would
    # race for the same ports; the kernel's ephemeral ports spread them out instead.
    for key in (
        "kubeApiserverPort",
        "etcdPort",
        "etcdPeerPort",
        "kubeControllerManagerPort",
        "kubeSchedulerPort",
        "kwokControllerPort",
    ):
        options[key] = _distinct_free_port(options)
    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": options,
        # Appended after kwokctl's own flags; the last of a repeated flag wins.
        "componentsPatches": [
            {
                "name": component,
                "extraArgs": [{"key": key, "value": value} for key, value in flags.items()],
            }
            for component, flags in COMPONENT_FLAGS.items()
        ],
    }


def _distinct_free_port(taken: dict[str, Any]) -> int:
    while True:
        port = free_port()
        if port not in taken.values():
            return port


def _process_running(pid: int) -> bool:
    """Alive and not a zombie: kwokctl's children stay zombies until someone reaps them."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _started(state_dir: Path, process: str) -> Started | None:
    """A kwokctl-started process as procs.wait_until knows one, once its pid file exists."""
    cluster = _cluster_dir(state_dir)
    try:
        pid = int((cluster / "pids" / f"{process}.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return Started(name=process, pid=pid, log=cluster / "logs" / f"{process}.log")


def _component_failed(started: Started) -> StackError:
    return StackError(
        f"kube: {started.name} exited while the control plane was starting. "
        f"Log: {started.log}\n{log_tail(started.log)}"
    )


def _check_components(state_dir: Path, require_all: bool) -> None:
    """Raise for the first component that died (or, with require_all, never started)."""
    for process in PROCESSES:
        started = _started(state_dir, process)
        if started is None and require_all:
            log = _kwokctl_log(state_dir)
            raise StackError(f"kube: kwokctl did not start {process}. Log: {log}\n{log_tail(log)}")
        if started is not None and not _process_running(started.pid):
            raise _component_failed(started)


def _run_kwokctl(
    kwokctl: Path,
    args: Sequence[str],
    state_dir: Path,
    timeout: float,
    *,
    kubectl: Path | None = None,
    watch: bool = True,
) -> None:
    """Run kwokctl; with watch, a component dying meanwhile fails at once (kwokctl itself
    would wait minutes for an API server that is gone)."""
    log = _kwokctl_log(state_dir)
    what = f"kwokctl {' '.join(args[:2])}"
    with log.open("ab") as out:
        out.write(f"\n=== kwokctl {' '.join(args)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            [str(kwokctl), *args],
            env=_kwokctl_env(state_dir, kubectl),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            if watch:
                _check_components(state_dir, require_all=False)
            if time.monotonic() > deadline:
                raise StackError(
                    f"kube: `{what}` took over {timeout:.0f}s. Log: {log}\n{log_tail(log)}"
                )
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise StackError(
            f"kube: `{what}` failed (exit {proc.returncode}). Log: {log}\n{log_tail(log)}"
        )


def _record_processes(state_dir: Path) -> None:
    """Copy each pid into the state dir and link each log there, where stop and people look."""
    for process in PROCESSES:
        started = _started(state_dir, process)
        assert started is not None  # _check_components(require_all=True) ran first
        name = _record_name(process)
        (state_dir / f"{name}.pid").write_text(str(started.pid))
        link = state_dir / f"{name}.log"
        link.unlink(missing_ok=True)
        link.symlink_to(started.log)


def _api_client(state_dir: Path) -> Any:
    from kubernetes import config  # late: only the control plane needs the client

    return config.new_client_from_config(config_file=str(kubeconfig_path(state_dir)))


def _readyz(api: Any) -> bool:
    response = api.call_api("GET", f"{api.configuration.host}/readyz", _request_timeout=5)
    return bool(response.status == 200)


def _nodes_ready(api: Any) -> bool:
    from kubernetes import client

    nodes = client.CoreV1Api(api).list_node(_request_timeout=5).items
    return len(nodes) >= NODES and all(_node_ready(node) for node in nodes)


def _node_ready(node: Any) -> bool:
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _default_service_account(api: Any) -> bool:
    from kubernetes import client

    client.CoreV1Api(api).read_namespaced_service_account("default", "default", _request_timeout=5)
    return True


def _wait(state_dir: Path, process: str, probe: Callable[[], bool], what: str) -> None:
    started = _started(state_dir, process)
    assert started is not None
    wait_until(started, probe, READY_TIMEOUT, what)


def _server_url(state_dir: Path) -> str:
    import yaml

    config = yaml.safe_load(kubeconfig_path(state_dir).read_text())
    return str(config["clusters"][0]["cluster"]["server"])


def _fresh_state(state_dir: Path, bins: dict[str, Path]) -> Path:
    """Stop leftovers of a crashed run (they hold ports and a stale etcd), clear their files,
    and write kwokctl's configuration; returns its path."""
    state_dir.mkdir(parents=True, exist_ok=True)
    stop(state_dir)
    shutil.rmtree(_workdir(state_dir), ignore_errors=True)
    kubeconfig_path(state_dir).unlink(missing_ok=True)  # kwokctl merges into an existing one
    _kwokctl_log(state_dir).unlink(missing_ok=True)
    (state_dir / "kube-kwokctl.txt").write_text(str(bins["kwokctl"]))  # for stop()
    config = state_dir / "kube-kwokctl.yaml"
    # JSON is YAML, and kwokctl reads YAML.
    config.write_text(json.dumps(kwokctl_config(bins, state_dir), indent=2) + "\n")
    return config


def _bring_up(state_dir: Path, bins: dict[str, Path], config: Path) -> None:
    kwokctl, kubectl = bins["kwokctl"], bins["kubectl"]
    create = [
        "create",
        "cluster",
        "--name",
        CLUSTER,
        "--config",
        str(config),
        "--kubeconfig",
        str(kubeconfig_path(state_dir)),
    ]
    _run_kwokctl(kwokctl, create, state_dir, CREATE_TIMEOUT, kubectl=kubectl)
    _check_components(state_dir, require_all=True)
    _record_processes(state_dir)
    api = _api_client(state_dir)
    try:
        _wait(state_dir, "kube-apiserver", lambda: _readyz(api), "ready (/readyz)")
        scale = [
            "scale",
            "node",
            "--name",
            CLUSTER,
            "--replicas",
            str(NODES),
            "--param",
            f".allocatable.pods={PODS_PER_NODE}",
        ]
        _run_kwokctl(kwokctl, scale, state_dir, 60, kubectl=kubectl)
        _wait(state_dir, "kwok-controller", lambda: _nodes_ready(api), f"{NODES} Ready node(s)")
        # The default ServiceAccount appears once the controller-manager's serviceaccount
        # controller runs; until then, creating a pod in `default` is refused.
        _wait(
            state_dir,
            "kube-controller-manager",
            lambda: _default_service_account(api),
            "creating the default ServiceAccount",
        )
    finally:
        api.close()


def start(state_dir: Path, cache_dir: Path) -> dict[str, str]:
    """Start the control plane and NODES simulated nodes; return the env that points at it."""
    bins = ensure_binaries(cache_dir, state_dir, CONTROL_PLANE)
    config = _fresh_state(state_dir, bins)
    try:
        _bring_up(state_dir, bins, config)
    except BaseException:
        stop(state_dir)
        raise
    return {
        "KUBECONFIG": str(kubeconfig_path(state_dir)),
        "LABELOPS_KUBE_APISERVER": _server_url(state_dir),
        "LABELOPS_KUBECTL": str(bins["kubectl"]),
    }


def running(state_dir: Path) -> bool:
    """Every control-plane process recorded in state_dir is alive."""
    for process in PROCESSES:
        try:
            pid = int((state_dir / f"{_record_name(process)}.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return False
        if not _process_running(pid):
            return False
    return kubeconfig_path(state_dir).is_file()


def _leftover_processes(state_dir: Path) -> list[int]:
    """Our components still running though no pid file names them (say, a lost pid file).

    A process counts only if it runs one of our binaries *and* its flags point into this
    state dir's cluster, so a shell tailing a log there, or another clone's stack, is spared.
    """
    needle = f"{_cluster_dir(state_dir)}/".encode()
    # kwokctl starts kwok through a link named kwok-controller; /proc/<pid>/exe resolves it.
    names = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            exe = Path(os.readlink(proc / "exe")).name
            if exe in names and needle in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to inspect
            continue
    return pids


def _terminate(pid: int, grace: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _process_running(pid):
            time.sleep(0.1)
        if not _process_running(pid):
            return


def stop(state_dir: Path) -> None:
    """Stop every control-plane process of state_dir; logs stay until the next start."""
    kwokctl_record = state_dir / "kube-kwokctl.txt"
    kwokctl = Path(kwokctl_record.read_text().strip()) if kwokctl_record.is_file() else None
    if kwokctl is not None and kwokctl.is_file() and _cluster_dir(state_dir).is_dir():
        try:
            # `stop`, not `delete`: delete would remove the logs a failed run needs.
            stop_cluster = ["stop", "cluster", "--name", CLUSTER]
            _run_kwokctl(kwokctl, stop_cluster, state_dir, 60, watch=False)
        except StackError as exc:
            print(f"warning: {exc}", file=sys.stderr)
    # Belt and braces: our pid copies, kwokctl's pid files, then any of our binaries still
    # running with flags pointing into this cluster (a process whose pid file was lost).
    pidfiles = [state_dir / f"{_record_name(p)}.pid" for p in PROCESSES]
    pidfiles += sorted((_cluster_dir(state_dir) / "pids").glob("*.pid"))
    for pidfile in pidfiles:
        stop_pidfile(pidfile)
    for pid in _leftover_processes(state_dir):
        _terminate(pid)
