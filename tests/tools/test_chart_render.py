"""charts/labelops rendered by the real helm with various values; assertions on the objects.

helm-unittest is a plugin that cannot be installed here, so these tests run `helm template`
and read the YAML. Nothing talks to a cluster: tests/e2e/test_chart.py does that.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from devstack.stack import REPO_ROOT
from gotools import stack_tool
from labelops.api.campaign import CampaignSpec
from labelops.api.crd import crd_yaml
from labelops.clients import kube as kube_client
from labelops.operator import metrics as _metrics  # noqa: F401  (registers the gauges)
from labelops.operator import plan, rbac
from labelops.operator.network_policy import NetworkPolicyPeers, parse_peers

# The first run builds a Go tool (helm, kstatus, ...) on a cold cache: minutes, not seconds.
pytestmark = pytest.mark.timeout(1800)

CHART = REPO_ROOT / "charts" / "labelops"
CRD_FILE = "labelingcampaigns.labelops.dev.yaml"


@pytest.fixture(scope="module")
def helm() -> Path:
    return stack_tool("helm")


def helm_template(helm: Path, *values: str, expect_error: bool = False) -> Any:
    argv = [str(helm), "template", "rel", str(CHART), "--namespace", "labelops-system"]
    for value in values:
        argv += ["--set", value]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if expect_error:
        assert run.returncode != 0, "helm template accepted values it should refuse"
        return run.stderr
    assert run.returncode == 0, run.stderr
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = by_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --- the CRD ------------------------------------------------------------------------------


def test_chart_ships_the_generated_crd() -> None:
    """The chart's copy must be today's generated CRD, or `helm install` ships a stale API."""
    generated = crd_yaml()
    assert (REPO_ROOT / "crds" / CRD_FILE).read_text() == generated
    assert (CHART / "crds" / CRD_FILE).read_text() == generated, "run `make crds`"


# --- defaults -----------------------------------------------------------------------------


def test_default_install_renders_only_the_core_objects(helm: Path) -> None:
    kinds = sorted(o["kind"] for o in helm_template(helm))
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]


def test_one_operator_replaced_not_rolled(helm: Path) -> None:
    spec = by_kind(helm_template(helm), "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_operator_runs_locked_down(helm: Path) -> None:
    objects = helm_template(helm)
    pod = by_kind(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(objects)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "memory" in container["resources"]["limits"]


def test_probes_hit_the_health_port(helm: Path) -> None:
    container = operator_container(helm_template(helm, "operator.healthPort=8181"))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8181, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert env_of(container)["LABELOPS_HEALTH_PORT"] == "8181"


def test_backends_come_from_existing_secrets(helm: Path) -> None:
    container = operator_container(
        helm_template(
            helm,
            "kafka.bootstrapSecret.name=kafka-conn",
            "kafka.bootstrapSecret.key=servers",
            "postgres.dsnSecret.name=pg-admin",
            "postgres.dsnSecret.key=url",
        )
    )
    env = env_of(container)
    assert env["LABELOPS_KAFKA_BOOTSTRAP"] == {
        "secretKeyRef": {"name": "kafka-conn", "key": "servers"}
    }
    assert env["LABELOPS_POSTGRES_DSN"] == {"secretKeyRef": {"name": "pg-admin", "key": "url"}}
    assert "LABELOPS_WORKER_KAFKA_BOOTSTRAP" not in env


def test_command_image_and_worker_settings(helm: Path) -> None:
    container = operator_container(
        helm_template(
            helm,
            "image.repository=registry.example/labelops",
            "image.tag=1.2.3",
            "operator.verbose=true",
            "kafka.workerBootstrap=kafka.data:9092",
            "postgres.workerHost=pg.data",
        )
    )
    assert container["image"] == "registry.example/labelops:1.2.3"
    assert [*container["command"], *container["args"]] == ["labelops", "operator", "--verbose"]
    env = env_of(container)
    # One image runs operator and workers, so workers default to the operator's image.
    assert env["LABELOPS_WORKER_IMAGE"] == "registry.example/labelops:1.2.3"
    assert env["LABELOPS_WORKER_KAFKA_BOOTSTRAP"] == "kafka.data:9092"
    assert env["LABELOPS_WORKER_POSTGRES_HOST"] == "pg.data"


def test_image_tag_defaults_to_app_version(helm: Path) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert operator_container(helm_template(helm))["image"] == f"labelops:{app_version}"


# --- RBAC ---------------------------------------------------------------------------------


def rules(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def test_rbac_grants_exactly_what_the_operator_uses(helm: Path) -> None:
    """The chart's ClusterRole is operator/labelops/operator/rbac.py, no more, no less.

    tests/e2e/test_chart.py proves it is enough; this pins it so a grant cannot creep in.
    """
    assert rules(by_kind(helm_template(helm), "ClusterRole")) == rbac.granted()


def test_rbac_covers_every_kind_the_kube_client_writes(helm: Path) -> None:
    granted = rules(by_kind(helm_template(helm), "ClusterRole"))
    for (api_version, _kind), plural in kube_client._PLURALS.items():
        group = api_version.rpartition("/")[0]
        assert "patch" in granted.get((group, plural), set()), (group, plural)
        if plural not in ("labelingcampaigns", "labelerpools"):
            # server-side apply creates what is missing
            assert "create" in granted[(group, plural)], (group, plural)


def test_namespaced_install_grants_a_role_per_namespace_and_nothing_cluster_wide(
    helm: Path,
) -> None:
    objects = helm_template(helm, "watchNamespaces={team-a,team-b}", "serviceAccount.name=bot")
    kinds = sorted(o["kind"] for o in objects)
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    roles = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "Role"}
    bindings = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "RoleBinding"}
    assert sorted(roles) == sorted(bindings) == ["team-a", "team-b"]
    for namespace, role in roles.items():
        assert rules(role) == rbac.granted(), namespace
        binding = bindings[namespace]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "bot", "namespace": "labelops-system"}
        ]
    args = operator_container(objects)["args"]
    assert args == ["operator", "--namespace", "team-a", "--namespace", "team-b"]


def test_cluster_wide_install_serves_every_namespace(helm: Path) -> None:
    assert "--namespace" not in operator_container(helm_template(helm))["args"]


def test_rbac_is_bound_to_the_operators_service_account(helm: Path) -> None:
    objects = helm_template(helm, "serviceAccount.name=labeler-bot")
    binding = by_kind(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == by_kind(objects, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "labeler-bot", "namespace": "labelops-system"}
    ]
    pod = by_kind(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "labeler-bot"
    assert by_kind(objects, "ServiceAccount")["metadata"]["name"] == "labeler-bot"


def test_rbac_and_service_account_can_be_managed_elsewhere(helm: Path) -> None:
    kinds = {
        o["kind"] for o in helm_template(helm, "rbac.create=false", "serviceAccount.create=false")
    }
    assert kinds.isdisjoint({"ClusterRole", "ClusterRoleBinding", "ServiceAccount"})


# --- monitoring and network ---------------------------------------------------------------


def test_service_monitor_scrapes_the_metrics_service(helm: Path) -> None:
    objects = helm_template(helm, "metrics.serviceMonitor.enabled=true")
    monitor = by_kind(objects, "ServiceMonitor")
    service = by_kind(objects, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_service_monitor_without_service_is_refused(helm: Path) -> None:
    stderr = helm_template(
        helm,
        "metrics.serviceMonitor.enabled=true",
        "metrics.service.enabled=false",
        expect_error=True,
    )
    assert "a ServiceMonitor scrapes a Service" in stderr


def test_prometheus_rule_alerts_on_stalled_deadline_trust_and_agreement(helm: Path) -> None:
    objects = helm_template(
        helm, "metrics.prometheusRule.enabled=true", "metrics.prometheusRule.severity=critical"
    )
    groups = by_kind(objects, "PrometheusRule")["spec"]["groups"]
    alerts = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    assert set(alerts) == {
        "LabelingCampaignStalled",
        "LabelingCampaignPastDeadline",
        "LabelingCampaignBehindDeadline",
        "ModelDistrusted",
        "AgreementLow",
    }
    assert 'type="Stalled"' in alerts["LabelingCampaignStalled"]["expr"]
    assert alerts["LabelingCampaignStalled"]["for"] == "10m"
    assert alerts["ModelDistrusted"]["expr"] == "labelops_campaign_model_trusted == 0"
    assert alerts["ModelDistrusted"]["for"] == "5m"
    assert "labelops_campaign_min_agreement" in alerts["AgreementLow"]["expr"]
    assert alerts["AgreementLow"]["for"] == "15m"
    for rule in alerts.values():
        assert rule["labels"] == {"severity": "critical"}
        # Prometheus, not Helm, must expand these: Helm would fail or print nothing.
        assert "{{ $labels.namespace }}/{{ $labels.name }}" in rule["annotations"]["summary"]


def test_alerts_read_only_metrics_the_operator_exports(helm: Path) -> None:
    objects = helm_template(helm, "metrics.prometheusRule.enabled=true")
    exprs = " ".join(
        rule["expr"]
        for group in by_kind(objects, "PrometheusRule")["spec"]["groups"]
        for rule in group["rules"]
    )
    assert set(re.findall(r"labelops_campaign_\w+", exprs)) <= operator_metric_names()


def operator_metric_names() -> set[str]:
    return {family.name for family in REGISTRY.collect() if family.name.startswith("labelops_")}


def test_grafana_dashboard_ships_as_a_configmap_for_the_sidecar(helm: Path) -> None:
    assert not [o for o in helm_template(helm) if o["kind"] == "ConfigMap"]
    objects = helm_template(helm, "metrics.grafanaDashboard.enabled=true")
    config_map = by_kind(objects, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "labelops-system"
    [(key, text)] = config_map["data"].items()
    assert key.endswith(".json")
    dashboard = json.loads(text)
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in (
        "progress",
        "label rate",
        "agreement",
        "gold accuracy",
        "labelers blocked",
        "machine-labeled share",
        "ingest lag",
        "outbox backlog",
        "dead letters",
    ):
        assert topic in titles, topic
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert set(re.findall(r"labelops_campaign_\w+", exprs)) <= operator_metric_names()
    elsewhere = helm_template(
        helm, "metrics.grafanaDashboard.enabled=true", "metrics.grafanaDashboard.namespace=grafana"
    )
    assert by_kind(elsewhere, "ConfigMap")["metadata"]["namespace"] == "grafana"


def test_pod_monitor_scrapes_every_campaigns_workers_and_learner(helm: Path) -> None:
    monitor = by_kind(helm_template(helm, "metrics.workersPodMonitor.enabled=true"), "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    ref = plan.CampaignRef("ml", "c1", "uid", 1)
    spec = CampaignSpec.model_validate(
        {
            "task": {"type": "classification", "instructions": "x", "choices": ["a", "b"]},
            "target": {"items": 1},
            "labelers": {"tokenSecretRef": {"name": "t"}},
            "model": {"learner": {"type": "builtin"}},
        }
    )
    env = plan.WorkerEnvironment("img", "kafka:9092", plan.PostgresEndpoint("pg", 5432, "db"))
    learner = plan.learner_deployment(ref, spec, env, 1)
    worker = plan.worker_deployment(ref, spec, env, 1, "hash")
    assert learner is not None
    for deployment in (worker, learner):
        pod = deployment["spec"]["template"]
        assert selects(monitor["spec"]["selector"], pod["metadata"]["labels"])
        ports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
        assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_label_labelops_dev_campaign"],
        "targetLabel": "name",
    } in endpoint["relabelings"]
    only = by_kind(
        helm_template(
            helm,
            "metrics.workersPodMonitor.enabled=true",
            "metrics.workersPodMonitor.namespaces={ml}",
        ),
        "PodMonitor",
    )
    assert only["spec"]["namespaceSelector"] == {"matchNames": ["ml"]}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector's meaning, for matchLabels and In expressions."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_network_policy_admits_only_scrapers_and_known_backends(helm: Path) -> None:
    scraper = "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring"
    pg_cidr = "networkPolicy.egress.postgres.to[0].ipBlock.cidr=10.20.0.0/16"
    policy = by_kind(
        helm_template(helm, "networkPolicy.enabled=true", scraper, pg_cidr), "NetworkPolicy"
    )["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
            "ports": [{"port": "metrics", "protocol": "TCP"}],
        }
    ]
    egress_ports = [sorted(p["port"] for p in rule["ports"]) for rule in policy["egress"]]
    assert egress_ports == [[53, 53], [443, 6443], [9092], [5432]]
    assert policy["egress"][3]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    assert "to" not in policy["egress"][2]


def test_campaign_network_policies_are_on_by_default_and_open_to_any_peer(helm: Path) -> None:
    env = env_of(operator_container(helm_template(helm)))
    assert env["LABELOPS_NETWORK_POLICIES"] == "true"
    assert parse_peers(env["LABELOPS_NETWORK_POLICY_PEERS"], "chart") == NetworkPolicyPeers()


def test_campaign_network_policy_peers_reach_the_operator(helm: Path) -> None:
    env = env_of(
        operator_container(
            helm_template(
                helm,
                "campaignNetworkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=obs",
                "campaignNetworkPolicy.egress.kafka[0].ipBlock.cidr=10.20.0.0/16",
                "campaignNetworkPolicy.egress.postgres[0].ipBlock.cidr=10.30.0.5/32",
            )
        )
    )
    peers = parse_peers(env["LABELOPS_NETWORK_POLICY_PEERS"], "chart")
    assert [p.manifest() for p in peers.metrics] == [
        {"namespaceSelector": {"matchLabels": {"team": "obs"}}}
    ]
    assert [p.manifest() for p in peers.kafka] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    assert [p.manifest() for p in peers.postgres] == [{"ipBlock": {"cidr": "10.30.0.5/32"}}]
    assert peers.api == peers.dns == ()
    off = env_of(operator_container(helm_template(helm, "campaignNetworkPolicy.enabled=false")))
    assert off["LABELOPS_NETWORK_POLICIES"] == "false"


def test_network_policy_without_scrapers_admits_nothing(helm: Path) -> None:
    policy = by_kind(helm_template(helm, "networkPolicy.enabled=true"), "NetworkPolicy")
    assert policy["spec"]["ingress"] == []


# --- values.schema.json -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("replicas=2", "additional properties 'replicas'"),
        ("podSecurityContext.runAsNonRoot=false", "runAsNonRoot"),
        ("securityContext.readOnlyRootFilesystem=false", "readOnlyRootFilesystem"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("operator.healthPort=70000", "healthPort"),
        ("kafka.bootstrapSecret.name=", "/kafka/bootstrapSecret/name"),
        ("metrics.prometheusRule.stalledFor=ten minutes", "stalledFor"),
        ("watchNamespaces={team-*}", "watchNamespaces"),
        ("campaignNetworkPolicy.egress.redis[0].ipBlock.cidr=10.0.0.0/8", "redis"),
        ("campaignNetworkPolicy.apiFrom[0].ipBlock.except[0]=10.0.0.0/8", "cidr"),
    ],
)
def test_schema_refuses_bad_values(helm: Path, value: str, complaint: str) -> None:
    stderr = helm_template(helm, value, expect_error=True)
    assert "values don't meet the specifications of the schema" in stderr
    assert complaint in stderr


def test_helm_lint_strict_passes(helm: Path) -> None:
    run = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
