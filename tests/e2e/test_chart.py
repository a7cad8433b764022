"""charts/labelops on the real control plane, and the operator running with its RBAC.

Pods cannot run containers here (kwok fakes them), so the chart's operator pod is played by
a local process started from the Deployment the chart installed: its command, its env
(secretKeyRefs resolved against the Secrets, as a kubelet would) and a kubeconfig holding a
token of the chart's ServiceAccount, obtained through the TokenRequest API. The operator
is cluster-wide, as in the chart. Any permission the ClusterRole lacks surfaces as a 403:
the campaign never becomes Ready, or the log shows it, and the test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from test_operator_harness import (
    DENIED_MARKERS,
    apply,
    delete_campaign,
    delete_namespace,
    example_documents,
    patch_spec,
    poll,
    service_account_kubeconfig,
    wait_campaign,
    wait_ready,
)

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
from gotools import go_tool, stack_tool

pytestmark = pytest.mark.e2e

CHART = REPO_ROOT / "charts" / "labelops"
ARGOCD_HEALTH = REPO_ROOT / "gitops" / "argocd" / "labelops.dev" / "LabelingCampaign"
CAMPAIGN = "helpfulness-q4"


def run(argv: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def namespace_object(name: str) -> client.V1Namespace:
    return client.V1Namespace(metadata=client.V1ObjectMeta(name=name))


@pytest.fixture(scope="module")
def helm() -> Path:
    return stack_tool("helm")


@pytest.fixture(scope="module")
def kubectl() -> Path:
    return stack_tool("kubectl")


@pytest.fixture(scope="module")
def admin_env(stack_env: dict[str, str]) -> dict[str, str]:
    """Environment for helm and kubectl as the stack's admin."""
    return {**os.environ, "KUBECONFIG": stack_env["KUBECONFIG"]}


@pytest.fixture(scope="module")
def release(
    kube_api: client.ApiClient, stack_env: dict[str, str], helm: Path, admin_env: dict[str, str]
) -> Iterator[tuple[str, str]]:
    """(namespace, release name) of a real `helm install`, with the Secrets it reads."""
    suffix = secrets.token_hex(3)
    namespace, name = f"labelops-system-{suffix}", f"labelops-{suffix}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(namespace_object(namespace))
    for secret, key, value in (
        ("labelops-kafka", "bootstrap", stack_env["LABELOPS_KAFKA_BOOTSTRAP"]),
        ("labelops-postgres", "dsn", stack_env["LABELOPS_POSTGRES_DSN"]),
    ):
        body = client.V1Secret(metadata=client.V1ObjectMeta(name=secret), string_data={key: value})
        core.create_namespaced_secret(namespace, body)
    install = [str(helm), "install", name, str(CHART), "--namespace", namespace]
    run([*install, "--set", "networkPolicy.enabled=true", "--wait", "--timeout", "3m"], admin_env)
    try:
        yield namespace, name
    finally:
        subprocess.run(
            [str(helm), "uninstall", name, "--namespace", namespace, "--wait"],
            env=admin_env,
            capture_output=True,
            timeout=300,
            check=False,
        )
        delete_namespace(kube_api, namespace)


def test_rendered_chart_passes_server_side_dry_run(
    kube_api: client.ApiClient, helm: Path, kubectl: Path, admin_env: dict[str, str]
) -> None:
    """Every object, CRD included, is one the API server admits (schema, defaults, CEL)."""
    namespace = f"labelops-dry-{secrets.token_hex(3)}"
    client.CoreV1Api(kube_api).create_namespace(namespace_object(namespace))
    try:
        template = [str(helm), "template", "dry", str(CHART), "--namespace", namespace]
        rendered = run(
            [*template, "--include-crds", "--set", "networkPolicy.enabled=true"], admin_env
        )
        applied = run(
            [str(kubectl), "apply", "--dry-run=server", "--namespace", namespace, "-f", "-"],
            admin_env,
            stdin=rendered,
        )
    finally:
        delete_namespace(kube_api, namespace)
    kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered) if doc}
    assert len(applied.splitlines()) == len([d for d in yaml.safe_load_all(rendered) if d])
    assert "CustomResourceDefinition" in kinds and "NetworkPolicy" in kinds


def test_helm_install_rolls_out_the_operator(
    kube_api: client.ApiClient, release: tuple[str, str]
) -> None:
    namespace, name = release
    deployment = client.AppsV1Api(kube_api).read_namespaced_deployment(name, namespace)
    assert deployment.status is not None and deployment.status.available_replicas == 1
    pod = deployment.spec.template.spec if deployment.spec else None
    assert pod is not None and pod.service_account_name == name


# --- the operator as the chart's ServiceAccount -----------------------------------------


@pytest.fixture(scope="module")
def sa_kubeconfig(
    kube_api: client.ApiClient,
    stack_env: dict[str, str],
    release: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    namespace, name = release
    path = tmp_path_factory.mktemp("chart-sa") / "kubeconfig"
    return service_account_kubeconfig(kube_api, stack_env["KUBECONFIG"], namespace, name, path)


def test_operator_credentials_are_the_service_accounts_not_admin(
    kubectl: Path, sa_kubeconfig: Path, release: tuple[str, str]
) -> None:
    """Guards the test below: with admin credentials it would prove nothing about RBAC."""
    env = {"KUBECONFIG": str(sa_kubeconfig), "PATH": "/usr/bin:/bin"}
    whoami = json.loads(run([str(kubectl), "auth", "whoami", "-o", "json"], env))
    namespace, name = release
    assert whoami["status"]["userInfo"]["username"] == (f"system:serviceaccount:{namespace}:{name}")
    denied = subprocess.run(
        [str(kubectl), "auth", "can-i", "list", "pods", "--all-namespaces"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert denied.stdout.strip() == "no"


@dataclass(frozen=True)
class ChartOperator:
    process: Started
    metrics_port: int


@pytest.fixture(scope="module")
def chart_operator(
    kube_api: client.ApiClient,
    release: tuple[str, str],
    sa_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ChartOperator]:
    """`labelops operator` started from the installed Deployment's pod template."""
    namespace, name = release
    deployment = client.AppsV1Api(kube_api).read_namespaced_deployment(name, namespace)
    assert deployment.spec is not None and deployment.spec.template.spec is not None
    [container] = deployment.spec.template.spec.containers
    env = resolve_env(client.CoreV1Api(kube_api), namespace, container, f"{name}-pod")
    health, metrics = free_port(), free_port()
    # A local process shares the host's ports; everything else is the pod's own settings.
    env |= {"LABELOPS_HEALTH_PORT": str(health), "LABELOPS_METRICS_PORT": str(metrics)}
    env["KUBECONFIG"] = str(sa_kubeconfig)
    state = tmp_path_factory.mktemp("chart-operator")
    started = start_process("chart-operator", local_argv(container), state, env=env)
    wait_until(started, lambda: port_open(health), 60, "serving /healthz")
    try:
        yield ChartOperator(started, metrics)
    finally:
        stop_pidfile(state / f"{started.name}.pid", grace=20)


@pytest.fixture(scope="module")
def campaign_namespace(kube_api: client.ApiClient) -> Iterator[str]:
    namespace = f"chart-campaigns-{secrets.token_hex(3)}"
    client.CoreV1Api(kube_api).create_namespace(namespace_object(namespace))
    try:
        yield namespace
    finally:
        delete_namespace(kube_api, namespace)


@pytest.fixture(scope="module")
def applied_campaign(kube_api: client.ApiClient, campaign_namespace: str) -> str:
    """The example campaign, applied once for the tests below (each of them runs alone too)."""
    apply(kube_api, example_documents(campaign_namespace))
    return campaign_namespace


def denials(operator: ChartOperator) -> list[str]:
    log = operator.process.log.read_text(errors="replace")
    return [line for line in log.splitlines() if any(m in line for m in DENIED_MARKERS)]


def test_operator_with_chart_rbac_reconciles_a_campaign_to_ready(
    kube_api: client.ApiClient, chart_operator: ChartOperator, applied_campaign: str
) -> None:
    campaign_namespace = applied_campaign
    try:
        wait_ready(kube_api, campaign_namespace, CAMPAIGN, timeout=180)
    except pytest.fail.Exception:
        print(log_tail(chart_operator.process.log, 80))
        raise
    assert denials(chart_operator) == []


@pytest.mark.usefixtures("applied_campaign")
def test_ready_campaign_is_healthy_for_argo_cd_and_current_for_kstatus(
    kube_api: client.ApiClient, chart_operator: ChartOperator, campaign_namespace: str
) -> None:
    """The GitOps checks agree with the live object the operator wrote, not only fixtures."""
    wait_ready(kube_api, campaign_namespace, CAMPAIGN)
    live = client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        "labelops.dev", "v1alpha1", campaign_namespace, "labelingcampaigns", CAMPAIGN
    )
    obj = json.dumps(live)
    kstatus = json.loads(run([str(stack_tool("kstatus"))], {}, stdin=obj))
    assert kstatus["status"] == "Current", kstatus
    argocd = go_tool("argocd-health", "stack/gitops-tools", "./argocd-health")
    health = json.loads(
        run([str(argocd), "-script", str(ARGOCD_HEALTH / "health.lua")], {}, stdin=obj)
    )
    assert health["status"] == "Healthy", health


# The gauges the chart's PrometheusRule reads (charts/labelops/templates/prometheusrule.yaml).
# labelops_campaign_eta_timestamp_seconds is left out: it is absent until labels arrive.
ALERT_METRICS = (
    "labelops_campaign_condition",
    "labelops_campaign_progress_ratio",
    "labelops_campaign_deadline_timestamp_seconds",
)


def exported_metrics(port: int) -> dict[str, list[str]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        lines = [
            line for line in reply.read().decode().splitlines() if line and not line.startswith("#")
        ]
    found: dict[str, list[str]] = {}
    for line in lines:
        found.setdefault(line.split("{")[0].split(" ")[0], []).append(line)
    return found


@pytest.mark.usefixtures("applied_campaign")
def test_operator_exports_the_metrics_the_alerts_use(
    kube_api: client.ApiClient, chart_operator: ChartOperator, campaign_namespace: str
) -> None:
    wait_ready(kube_api, campaign_namespace, CAMPAIGN)
    poll(
        lambda: set(ALERT_METRICS) <= set(exported_metrics(chart_operator.metrics_port)),
        "every metric the alerts use exported",
        log=lambda: (
            "missing: "
            + ", ".join(
                sorted(set(ALERT_METRICS) - set(exported_metrics(chart_operator.metrics_port)))
            )
        ),
    )
    exported = exported_metrics(chart_operator.metrics_port)
    ready_true = [
        line
        for line in exported["labelops_campaign_condition"]
        if f'name="{CAMPAIGN}"' in line and 'type="Ready"' in line and 'status="True"' in line
    ]
    assert ready_true and ready_true[0].endswith(" 1.0"), ready_true


@pytest.mark.usefixtures("applied_campaign")
def test_operator_with_chart_rbac_reclaims_a_deleted_campaign(
    kube_api: client.ApiClient, chart_operator: ChartOperator, campaign_namespace: str
) -> None:
    """Deletion runs the reclaim path: its deletes need their own grants."""
    patch_spec(kube_api, campaign_namespace, CAMPAIGN, {"reclaimPolicy": "Delete"})
    delete_campaign(kube_api, campaign_namespace, CAMPAIGN)
    try:
        wait_campaign(
            kube_api, campaign_namespace, CAMPAIGN, lambda o: o is None, "deleted", timeout=180
        )
    except pytest.fail.Exception:
        print(log_tail(chart_operator.process.log, 80))
        raise
    assert denials(chart_operator) == []
