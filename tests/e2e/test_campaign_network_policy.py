"""A campaign's NetworkPolicies on the real API server: the operator writes them, the API
server admits them, they select the campaign's live worker (and learner) pods and nothing
else, open exactly the ports those pods serve and the backends they are given, and go with
the campaign.

Nothing here enforces them (the local stack has no network plugin; a CNI such as Calico or
Cilium does that in a cluster): what is tested is that the policies the operator writes
mean what they should for the pods that actually run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from test_operator_harness import (
    Operator,
    apply,
    campaign_documents,
    crd_namespace,
    delete_campaign,
    get_object,
    patch_spec,
    running_operator,
    wait_campaign,
    wait_ready,
)

from devstack.procs import wait_until
from labelops.api.naming import CampaignNames
from labelops.operator import network_policy, plan
from labelops.operator.settings import OperatorSettings

pytestmark = pytest.mark.e2e

CAMPAIGN = "isolated"
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
KAFKA_NET = {"ipBlock": {"cidr": "127.0.0.0/8"}}
PEERS = {"metrics": [MONITORING], "kafka": [KAFKA_NET]}


@pytest.fixture(scope="module")
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    with crd_namespace(kube_api, "e2e-netpol") as name:
        yield name


@pytest.fixture(scope="module")
def operator(
    kube_api: client.ApiClient,
    stack_env: dict[str, str],
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    state = tmp_path_factory.mktemp("operator")
    peers = {"LABELOPS_NETWORK_POLICY_PEERS": json.dumps(PEERS)}
    with running_operator(state, stack_env, namespace, **peers) as op:
        yield op


@pytest.fixture(scope="module")
def campaign(kube_api: client.ApiClient, namespace: str, operator: Operator) -> CampaignNames:
    apply(kube_api, campaign_documents(namespace, CAMPAIGN, reclaimPolicy="Delete"))
    wait_ready(kube_api, namespace, CAMPAIGN, timeout=150, operator=operator)
    return CampaignNames(namespace, CAMPAIGN)


def policy(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found = get_object(api, "networking.k8s.io/v1", "NetworkPolicy", namespace, name)
    assert found is not None, f"NetworkPolicy {namespace}/{name} does not exist"
    return found


def pods(api: client.ApiClient, namespace: str, selector: dict[str, str]) -> list[Any]:
    expression = ",".join(f"{k}={v}" for k, v in selector.items())
    return list(
        client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=expression).items
    )


def wait_pods(
    api: client.ApiClient, operator: Operator, namespace: str, labels: dict[str, str]
) -> list[Any]:
    assert operator.started is not None
    wait_until(operator.started, lambda: bool(pods(api, namespace, labels)), 90, "running pods")
    return pods(api, namespace, labels)


def served_ports(pod: Any) -> set[int]:
    return {port.container_port for c in pod.spec.containers for port in c.ports or []}


def test_worker_policy_selects_the_live_worker_pods_and_opens_their_api_port_only(
    kube_api: client.ApiClient, operator: Operator, campaign: CampaignNames
) -> None:
    found = policy(kube_api, campaign.namespace, campaign.worker)
    spec = found["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    selector = spec["podSelector"]["matchLabels"]
    workers = wait_pods(kube_api, operator, campaign.namespace, selector)
    # Exactly the worker Deployment's pods: none of the learner's.
    deployment = get_object(kube_api, "apps/v1", "Deployment", campaign.namespace, campaign.worker)
    assert deployment is not None
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert all(p.metadata.labels["app.kubernetes.io/component"] == "worker" for p in workers)
    [ingress] = spec["ingress"]
    assert {p["port"] for p in ingress["ports"]} == served_ports(workers[0])
    # No `api` peers configured: any caller, on that port only (scrapers included).
    assert "from" not in ingress


def test_worker_egress_is_postgres_kafka_and_dns_at_the_addresses_workers_are_given(
    kube_api: client.ApiClient, stack_env: dict[str, str], campaign: CampaignNames
) -> None:
    settings = OperatorSettings.from_env(stack_env)
    postgres_port = plan.PostgresEndpoint.from_admin_dsn(settings.postgres_dsn).port
    kafka_ports = set(network_policy.kafka_ports(settings.kafka_bootstrap_for_workers))
    egress = policy(kube_api, campaign.namespace, campaign.worker)["spec"]["egress"]
    by_port = {(p["port"], p["protocol"]): rule.get("to") for rule in egress for p in rule["ports"]}
    assert set(by_port) == {
        (postgres_port, "TCP"),
        *((port, "TCP") for port in kafka_ports),
        (53, "UDP"),
        (53, "TCP"),
    }
    assert all(by_port[(port, "TCP")] == [KAFKA_NET] for port in kafka_ports)
    assert by_port[(postgres_port, "TCP")] is None  # no postgres peers configured: any


def test_learner_policy_admits_only_scrapers_and_reaches_only_kafka(
    kube_api: client.ApiClient,
    stack_env: dict[str, str],
    operator: Operator,
    campaign: CampaignNames,
) -> None:
    ref = plan.CampaignRef(campaign.namespace, CAMPAIGN, "", 1)
    spec = policy(kube_api, campaign.namespace, plan.learner_name(ref))["spec"]
    learners = wait_pods(kube_api, operator, campaign.namespace, spec["podSelector"]["matchLabels"])
    assert all(p.metadata.labels["app.kubernetes.io/component"] == "learner" for p in learners)
    [ingress] = spec["ingress"]
    assert ingress["from"] == [MONITORING]
    assert {p["port"] for p in ingress["ports"]} == served_ports(learners[0])
    egress_ports = {(p["port"], p["protocol"]) for rule in spec["egress"] for p in rule["ports"]}
    bootstrap = OperatorSettings.from_env(stack_env).kafka_bootstrap_for_workers
    kafka = {(port, "TCP") for port in network_policy.kafka_ports(bootstrap)}
    assert egress_ports == {(53, "UDP"), (53, "TCP"), *kafka}  # no PostgreSQL route


def test_policies_go_with_the_campaign(
    kube_api: client.ApiClient, operator: Operator, campaign: CampaignNames
) -> None:
    ref = plan.CampaignRef(campaign.namespace, CAMPAIGN, "", 1)
    names = [campaign.worker, plan.learner_name(ref)]
    for name in names:
        [owner] = policy(kube_api, campaign.namespace, name)["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"]) == ("LabelingCampaign", CAMPAIGN)
    patch_spec(kube_api, campaign.namespace, CAMPAIGN, {"reclaimPolicy": "Delete"})
    delete_campaign(kube_api, campaign.namespace, CAMPAIGN)
    wait_campaign(
        kube_api, campaign.namespace, CAMPAIGN, lambda o: o is None, "deleted", 120, operator
    )
    assert operator.started is not None
    wait_until(
        operator.started,
        lambda: all(
            get_object(kube_api, "networking.k8s.io/v1", "NetworkPolicy", campaign.namespace, n)
            is None
            for n in names
        ),
        90,
        "rid of the campaign's NetworkPolicies (garbage collection)",
    )
