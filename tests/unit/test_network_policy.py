"""Campaign NetworkPolicies as pure objects: which pods they select, which ports and peers
they open, how the operator's settings configure them, and the watched-namespace setting
that goes with a namespaced install. tests/e2e/test_campaign_network_policy.py checks the
same objects on the real API server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labelops.api.worker_configmap import WORKER_PORT
from labelops.operator import network_policy, plan, pool_plan, rbac
from labelops.operator.network_policy import NetworkPolicyPeers, parse_peers
from labelops.operator.settings import ConfigError, OperatorSettings, watch_namespaces

REF = plan.CampaignRef("human-data", "helpfulness-q4", "uid-123", 3)
BASE_ENV = {"LABELOPS_KAFKA_BOOTSTRAP": "k:9092", "LABELOPS_POSTGRES_DSN": "host=pg dbname=x"}
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
KAFKA_NET = {"ipBlock": {"cidr": "10.20.0.0/16", "except": ["10.20.9.0/24"]}}


def environment(peers: NetworkPolicyPeers | None) -> plan.WorkerEnvironment:
    return plan.WorkerEnvironment(
        default_image="labelops:1",
        kafka_bootstrap="kafka-0.kafka:9092,kafka-1.kafka:9093",
        postgres=plan.PostgresEndpoint("pg.data", 6432, "labels"),
        network_policy_peers=peers,
    )


def policies(peers: NetworkPolicyPeers | None = None) -> dict[str, dict[str, Any]]:
    found = plan.network_policies(REF, environment(peers or NetworkPolicyPeers()))
    return {p["metadata"]["name"]: p for p in found}


def ports(rule: dict[str, Any]) -> list[tuple[int, str]]:
    return [(p["port"], p["protocol"]) for p in rule["ports"]]


def test_worker_pods_are_selected_and_owned_by_the_campaign() -> None:
    worker = policies()["helpfulness-q4-worker"]
    deployment_pods = {"matchLabels": REF.names.selector_labels()}
    assert worker["spec"]["podSelector"] == deployment_pods
    assert worker["metadata"]["namespace"] == "human-data"
    [owner] = worker["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "LabelingCampaign",
        "uid-123",
        True,
    )
    assert worker["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_worker_takes_requests_on_the_api_port_only_and_calls_only_its_backends() -> None:
    spec = policies()["helpfulness-q4-worker"]["spec"]
    [ingress] = spec["ingress"]
    assert ports(ingress) == [(WORKER_PORT, "TCP")]
    assert "from" not in ingress  # any caller, but only on the API port
    assert [ports(rule) for rule in spec["egress"]] == [
        [(6432, "TCP")],  # PostgreSQL, at the port workers are given
        [(9092, "TCP"), (9093, "TCP")],  # every port of the workers' Kafka bootstrap
        [(53, "UDP"), (53, "TCP")],
    ]
    assert all("to" not in rule for rule in spec["egress"])


def test_configured_peers_narrow_every_rule() -> None:
    peers = parse_peers(
        '{"api": [{"podSelector": {"matchLabels": {"app": "router"}}}],'
        f' "metrics": [{_json(MONITORING)}],'
        f' "kafka": [{_json(KAFKA_NET)}],'
        ' "postgres": [{"ipBlock": {"cidr": "10.30.0.5/32"}}],'
        ' "dns": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name":'
        ' "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]}',
        "test",
    )
    spec = policies(peers)["helpfulness-q4-worker"]["spec"]
    [ingress] = spec["ingress"]
    # Metrics share the API port: restricting callers must not lock the scrapers out.
    assert ingress["from"] == [{"podSelector": {"matchLabels": {"app": "router"}}}, MONITORING]
    postgres, kafka, dns = spec["egress"]
    assert postgres["to"] == [{"ipBlock": {"cidr": "10.30.0.5/32"}}]
    assert kafka["to"] == [KAFKA_NET]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}


ROUTER_CALLERS = NetworkPolicyPeers.model_validate(
    {"api": [{"podSelector": {"matchLabels": {"app": "ingress"}}}], "metrics": [MONITORING]}
)


def worker_ingress(peers: NetworkPolicyPeers, pool: str | None) -> dict[str, Any]:
    found = plan.network_policies(REF, environment(peers), pool)
    [worker] = [p for p in found if p["metadata"]["name"] == "helpfulness-q4-worker"]
    [ingress] = worker["spec"]["ingress"]
    assert ports(ingress) == [(WORKER_PORT, "TCP")]
    return dict(ingress)


def test_restricted_callers_still_admit_the_pool_s_router() -> None:
    ingress = worker_ingress(ROUTER_CALLERS, "experts")
    api, scrapers, router = ingress["from"]
    assert api == {"podSelector": {"matchLabels": {"app": "ingress"}}}
    assert scrapers == MONITORING
    # The router's own pods, in the campaign's namespace (no namespaceSelector), and no one
    # else's: the labels are those of the Deployment the pool's reconcile writes.
    pool = pool_plan.PoolObjectRef(REF.namespace, "experts", "uid-pool", 1)
    assert set(router) == {"podSelector"}
    assert router["podSelector"] == {"matchLabels": pool.selector_labels()}
    assert pool.selector_labels().items() <= pool.labels().items()
    other = pool_plan.PoolObjectRef(REF.namespace, "others", "uid-other", 1)
    assert not router["podSelector"]["matchLabels"].items() <= other.labels().items()


def test_a_campaign_without_a_pool_admits_no_router() -> None:
    ingress = worker_ingress(ROUTER_CALLERS, None)
    assert ingress["from"] == [{"podSelector": {"matchLabels": {"app": "ingress"}}}, MONITORING]


def test_unrestricted_callers_stay_unrestricted_in_a_pool() -> None:
    """No `api` peers: any caller on the API port; adding the router must not narrow it."""
    assert "from" not in worker_ingress(NetworkPolicyPeers(), "experts")
    assert "from" not in worker_ingress(
        NetworkPolicyPeers.model_validate({"metrics": [MONITORING]}), "experts"
    )


def test_learner_reaches_kafka_only_and_admits_only_scrapers() -> None:
    learner = policies()["helpfulness-q4-learner"]
    assert learner["spec"]["podSelector"] == {"matchLabels": plan.learner_selector_labels(REF)}
    assert learner["spec"]["ingress"] == []  # nobody calls a learner; probes are exempt
    assert [ports(rule) for rule in learner["spec"]["egress"]] == [
        [(9092, "TCP"), (9093, "TCP")],
        [(53, "UDP"), (53, "TCP")],
    ]
    scraped = policies(NetworkPolicyPeers.model_validate({"metrics": [MONITORING]}))
    [ingress] = scraped["helpfulness-q4-learner"]["spec"]["ingress"]
    assert ingress == {
        "ports": [{"port": plan.LEARNER_PORT, "protocol": "TCP"}],
        "from": [MONITORING],
    }


def test_learner_policy_never_selects_worker_pods() -> None:
    """The worker's ingress rule must not be widened or narrowed by the learner's policy."""
    learner_selector = policies()["helpfulness-q4-learner"]["spec"]["podSelector"]["matchLabels"]
    assert not learner_selector.items() <= REF.names.labels().items()


def test_without_peers_setting_the_operator_writes_no_policy() -> None:
    assert plan.network_policies(REF, environment(None)) == []


def test_rbac_lets_the_operator_apply_policies() -> None:
    assert {"create", "patch"} <= rbac.granted()[("networking.k8s.io", "networkpolicies")]


@pytest.mark.parametrize(
    ("bootstrap", "expected"),
    [("k:9092", (9092,)), ("a:9094, b:9094,c", (9092, 9094)), ("[::1]:19092", (19092,))],
)
def test_kafka_ports_come_from_the_bootstrap(bootstrap: str, expected: tuple[int, ...]) -> None:
    assert network_policy.kafka_ports(bootstrap) == expected


# --- settings -----------------------------------------------------------------------------


def test_policies_are_on_by_default_and_open_to_any_peer() -> None:
    settings = OperatorSettings.from_env(BASE_ENV)
    assert settings.network_policies is True
    assert settings.network_policy_peers == NetworkPolicyPeers()


def test_policies_can_be_switched_off() -> None:
    env = {**BASE_ENV, "LABELOPS_NETWORK_POLICIES": "false"}
    assert OperatorSettings.from_env(env).network_policies is False


def test_peers_are_read_from_json() -> None:
    env = {**BASE_ENV, "LABELOPS_NETWORK_POLICY_PEERS": f'{{"kafka": [{_json(KAFKA_NET)}]}}'}
    [peer] = OperatorSettings.from_env(env).network_policy_peers.kafka
    assert peer.manifest() == KAFKA_NET


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("LABELOPS_NETWORK_POLICIES", "sometimes", "LABELOPS_NETWORK_POLICIES='sometimes'"),
        ("LABELOPS_NETWORK_POLICY_PEERS", '{"redis": []}', "redis"),
        ("LABELOPS_NETWORK_POLICY_PEERS", '{"kafka": [{}]}', "kafka.0"),
        (
            "LABELOPS_NETWORK_POLICY_PEERS",
            '{"kafka": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}',
            "ipBlock cannot be combined",
        ),
        ("LABELOPS_NETWORK_POLICY_PEERS", "[1, 2]", "(top level)"),
    ],
)
def test_bad_policy_settings_name_the_variable(variable: str, value: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as refused:
        OperatorSettings.from_env({**BASE_ENV, variable: value})
    assert variable in str(refused.value)
    assert complaint in str(refused.value)


def test_watched_namespaces_are_exact_names_in_order_once() -> None:
    assert watch_namespaces([]) == ()
    assert watch_namespaces(["team-a", "team-b", "team-a"]) == ("team-a", "team-b")


@pytest.mark.parametrize("name", ["team-*", "Team", "-a", "a" * 64, ""])
def test_namespace_patterns_and_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="no patterns: each namespace needs its own Role"):
        watch_namespaces([name])


# --- rbac helpers -------------------------------------------------------------------------


def test_taking_a_verb_away_leaves_the_other_rules_alone() -> None:
    fewer = rbac.granted(rbac.without("", "secrets", "get"))
    assert fewer[("", "secrets")] == rbac.granted()[("", "secrets")] - {"get"}
    assert {k: v for k, v in fewer.items() if k != ("", "secrets")} == {
        k: v for k, v in rbac.granted().items() if k != ("", "secrets")
    }
    assert ("labelops.dev", "labelingcampaigns/status") not in rbac.granted(
        rbac.without("labelops.dev", "labelingcampaigns/status", "patch")
    )


def test_nothing_cluster_scoped_is_granted() -> None:
    """A namespaced install holds a Role per namespace and nothing cluster-wide."""
    cluster_scoped = {"namespaces", "customresourcedefinitions", "nodes", "clusterroles"}
    assert not {resource for _, resource in rbac.granted()} & cluster_scoped


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value)
