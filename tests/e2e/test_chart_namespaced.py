"""charts/labelops installed in namespaced mode (`watchNamespaces`) on the real control plane:
a Role and RoleBinding in the watched namespace, nothing cluster-wide, and the operator,
started from the installed Deployment (its args carry `--namespace`) with a token of the
chart's ServiceAccount, takes a campaign there to Ready and deletes it, with no refusal.

As in test_chart.py, the operator pod is played by a local process (kwok runs no containers).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest
from kubernetes import client
from test_operator_harness import (
    DENIED_MARKERS,
    apply,
    campaign_documents,
    delete_campaign,
    delete_namespace,
    install_crd,
    new_namespace,
    patch_spec,
    service_account_kubeconfig,
    wait_campaign,
    wait_ready,
)

from devstack import kubeapply
from devstack.podrunner import local_argv, resolve_env
from devstack.procs import (
    Started,
    free_port,
    log_tail,
    port_open,
    start_process,
    stop_pidfile,
    wait_until,
)
from devstack.stack import REPO_ROOT
from gotools import stack_tool

pytestmark = pytest.mark.e2e

CHART = REPO_ROOT / "charts" / "labelops"
CAMPAIGN = "scoped"


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, check=False)


@pytest.fixture(scope="module")
def install(
    kube_api: client.ApiClient, stack_env: dict[str, str]
) -> Iterator[tuple[str, str, str]]:
    """(release namespace, release name, watched namespace) of a real namespaced install."""
    install_crd(kube_api)
    suffix = secrets.token_hex(3)
    release_ns, name = f"labelops-scoped-{suffix}", f"labelops-{suffix}"
    watched = new_namespace(kube_api, "chart-watched")
    kubeapply.ensure_namespace(kube_api, release_ns)
    core = client.CoreV1Api(kube_api)
    for secret, key, value in (
        ("labelops-kafka", "bootstrap", stack_env["LABELOPS_KAFKA_BOOTSTRAP"]),
        ("labelops-postgres", "dsn", stack_env["LABELOPS_POSTGRES_DSN"]),
    ):
        body = client.V1Secret(metadata=client.V1ObjectMeta(name=secret), string_data={key: value})
        core.create_namespaced_secret(release_ns, body)
    helm = str(stack_tool("helm"))
    admin = {**os.environ, "KUBECONFIG": stack_env["KUBECONFIG"]}
    done = run(
        [
            helm,
            "install",
            name,
            str(CHART),
            "--namespace",
            release_ns,
            "--wait",
            "--timeout",
            "3m",
            "--set",
            f"watchNamespaces={{{watched}}}",
        ],
        admin,
    )
    assert done.returncode == 0, done.stderr
    try:
        yield release_ns, name, watched
    finally:
        run([helm, "uninstall", name, "--namespace", release_ns, "--wait"], admin)
        delete_namespace(kube_api, release_ns)
        delete_namespace(kube_api, watched)


@pytest.fixture(scope="module")
def sa_env(
    kube_api: client.ApiClient,
    stack_env: dict[str, str],
    install: tuple[str, str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    release_ns, name, _ = install
    path = tmp_path_factory.mktemp("scoped-sa") / "kubeconfig"
    kubeconfig = service_account_kubeconfig(
        kube_api, stack_env["KUBECONFIG"], release_ns, name, path
    )
    return {"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}


def can_i(env: dict[str, str], *args: str) -> str:
    done = run([str(stack_tool("kubectl")), "auth", "can-i", *args], env)
    return done.stdout.strip()


def test_the_account_holds_nothing_cluster_wide(
    sa_env: dict[str, str], install: tuple[str, str, str]
) -> None:
    release_ns, _, watched = install
    for verb, resource in (
        ("get", "secrets"),
        ("patch", "deployments"),
        ("list", "labelingcampaigns"),
    ):
        assert can_i(sa_env, verb, resource, "--all-namespaces") == "no", (verb, resource)
        assert can_i(sa_env, verb, resource, "-n", "default") == "no", (verb, resource)
        assert can_i(sa_env, verb, resource, "-n", release_ns) == "no", (verb, resource)
        assert can_i(sa_env, verb, resource, "-n", watched) == "yes", (verb, resource)
    for cluster_scoped in ("namespaces", "customresourcedefinitions.apiextensions.k8s.io", "nodes"):
        assert can_i(sa_env, "list", cluster_scoped) == "no", cluster_scoped


@pytest.fixture(scope="module")
def operator(
    kube_api: client.ApiClient,
    install: tuple[str, str, str],
    sa_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Started]:
    release_ns, name, watched = install
    deployment = client.AppsV1Api(kube_api).read_namespaced_deployment(name, release_ns)
    assert deployment.spec is not None and deployment.spec.template.spec is not None
    [container] = deployment.spec.template.spec.containers
    assert (container.args or [])[-2:] == ["--namespace", watched]
    env = resolve_env(client.CoreV1Api(kube_api), release_ns, container, f"{name}-pod")
    health = free_port()
    env |= {"LABELOPS_HEALTH_PORT": str(health), "LABELOPS_METRICS_PORT": str(free_port())}
    env["KUBECONFIG"] = sa_env["KUBECONFIG"]
    state = tmp_path_factory.mktemp("scoped-operator")
    started = start_process("scoped-operator", local_argv(container), state, env=env)
    wait_until(started, lambda: port_open(health), 60, "serving /healthz")
    try:
        yield started
    finally:
        stop_pidfile(state / f"{started.name}.pid", grace=20)


def refusals(started: Started) -> list[str]:
    log = started.log.read_text(errors="replace")
    return [line for line in log.splitlines() if any(m in line for m in DENIED_MARKERS)]


def test_namespaced_operator_serves_its_namespace_with_the_charts_role(
    kube_api: client.ApiClient, install: tuple[str, str, str], operator: Started
) -> None:
    _, _, watched = install
    apply(kube_api, campaign_documents(watched, CAMPAIGN))
    try:
        wait_ready(kube_api, watched, CAMPAIGN, timeout=180)
        patch_spec(kube_api, watched, CAMPAIGN, {"reclaimPolicy": "Delete"})
        delete_campaign(kube_api, watched, CAMPAIGN)
        wait_campaign(kube_api, watched, CAMPAIGN, lambda o: o is None, "deleted", timeout=180)
    except pytest.fail.Exception:
        print(log_tail(operator.log, 80))
        raise
    assert refusals(operator) == []
