"""spec.workers.autoscaling on the real API server: the operator writes the HPA and leaves
replicas alone (an HPA-like write of replicas survives the operator's passes), and takes
them back at 0 once the target is met. With KEDA's CRDs served (stand-ins from
tests/fixtures/keda-crds.yaml), mode keda writes a ScaledObject with both triggers, the items
topic's lag and the active leases, whose url is the worker Service's /metrics, where a worker
started from the operator's Deployment serves the gauge the trigger names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from test_operator_harness import (
    Operator,
    apply,
    campaign_documents,
    crd_namespace,
    describe,
    get_campaign,
    get_object,
    is_ready,
    module_operator,
    patch_spec,
    poll,
    wait_campaign,
)

from devstack import kubeapply, podrunner
from labelops.api.naming import CampaignNames

pytestmark = pytest.mark.e2e

NAME = "scaled"
KEDA_NAME = "leased"
KEDA_CRDS = Path(__file__).resolve().parents[1] / "fixtures" / "keda-crds.yaml"
SCALED_OBJECT = ("keda.sh/v1alpha1", "ScaledObject")


@pytest.fixture(scope="module")
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    with crd_namespace(kube_api, "e2e-autoscaling") as name:
        yield name


@pytest.fixture(scope="module")
def operator(
    kube_api: client.ApiClient,
    stack_env: dict[str, str],
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    state = tmp_path_factory.mktemp("operator")
    with module_operator(kube_api, stack_env, namespace, state, drop_data=True) as op:
        yield op


def observed(api: client.ApiClient, namespace: str, generation: int) -> Any:
    return wait_campaign(
        api,
        namespace,
        NAME,
        lambda o: o is not None and (o.get("status") or {}).get("observedGeneration") == generation,
        f"generation {generation} observed",
    )


def replicas(api: client.ApiClient, namespace: str) -> int | None:
    live = get_object(
        api, "apps/v1", "Deployment", namespace, CampaignNames(namespace, NAME).worker
    )
    return None if live is None else live["spec"].get("replicas")


def test_the_operator_writes_the_hpa_and_leaves_replicas_alone(
    kube_api: client.ApiClient, namespace: str, operator: Operator
) -> None:
    worker = CampaignNames(namespace, NAME).worker
    auto = {"minReplicas": 1, "maxReplicas": 2, "targetCPUUtilization": 60}
    apply(kube_api, campaign_documents(namespace, NAME, **{"workers.autoscaling": auto}))
    poll(
        lambda: (
            get_object(kube_api, "autoscaling/v2", "HorizontalPodAutoscaler", namespace, worker)
            is not None
        ),
        "HPA written",
        log=operator.log,
    )
    hpa = get_object(kube_api, "autoscaling/v2", "HorizontalPodAutoscaler", namespace, worker)
    assert hpa is not None and hpa["spec"]["maxReplicas"] == 2
    poll(lambda: replicas(kube_api, namespace) is not None, "Deployment written", log=operator.log)

    # What the HPA controller would do: scale the Deployment through its scale subresource.
    client.AppsV1Api(kube_api).patch_namespaced_deployment_scale(
        worker, namespace, {"spec": {"replicas": 2}}
    )
    # Passes of the operator (spec changes), each fully observed: replicas stay 2, not 1.
    for cpu in (61, 62):
        generation = patch_spec(
            kube_api,
            namespace,
            NAME,
            {"workers": {"autoscaling": {**auto, "targetCPUUtilization": cpu}}},
        )
        observed(kube_api, namespace, generation)
        assert replicas(kube_api, namespace) == 2, operator.log()
    hpa = get_object(kube_api, "autoscaling/v2", "HorizontalPodAutoscaler", namespace, worker)
    assert hpa is not None
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 62


def test_paused_removes_the_hpa_and_resume_recreates_it(
    kube_api: client.ApiClient, namespace: str, operator: Operator
) -> None:
    worker = CampaignNames(namespace, NAME).worker
    observed(kube_api, namespace, patch_spec(kube_api, namespace, NAME, {"paused": True}))
    poll(
        lambda: (
            get_object(kube_api, "autoscaling/v2", "HorizontalPodAutoscaler", namespace, worker)
            is None
        ),
        "HPA deleted while paused",
        log=operator.log,
    )
    assert replicas(kube_api, namespace) == 1
    observed(kube_api, namespace, patch_spec(kube_api, namespace, NAME, {"paused": False}))
    poll(
        lambda: (
            get_object(kube_api, "autoscaling/v2", "HorizontalPodAutoscaler", namespace, worker)
            is not None
        ),
        "HPA recreated on resume",
        log=operator.log,
    )
    assert get_campaign(kube_api, namespace, NAME) is not None


@pytest.fixture(scope="module")
def keda_served(kube_api: client.ApiClient) -> None:
    crds = kubeapply.load_documents(KEDA_CRDS)
    kubeapply.apply(kube_api, crds)
    for crd in crds:
        kubeapply.wait_crd_established(kube_api, crd["metadata"]["name"])


def gauge_values(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text exposition, by name (parsing all of it, as KEDA's
    metrics-api scaler does with format prometheus)."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_keda_scales_on_the_items_lag_and_on_the_active_leases_the_workers_serve(
    kube_api: client.ApiClient,
    namespace: str,
    operator: Operator,
    keda_served: None,
    tmp_path: Path,
) -> None:
    names = CampaignNames(namespace, KEDA_NAME)
    auto = {"mode": "keda", "minReplicas": 1, "maxReplicas": 2, "leasesPerReplica": 7}
    apply(kube_api, campaign_documents(namespace, KEDA_NAME, **{"workers.autoscaling": auto}))
    poll(
        lambda: get_object(kube_api, *SCALED_OBJECT, namespace, names.worker) is not None,
        "ScaledObject written",
        timeout=120,
        log=lambda: f"{describe(get_campaign(kube_api, namespace, KEDA_NAME))}\n{operator.log()}",
    )
    scaled = get_object(kube_api, *SCALED_OBJECT, namespace, names.worker)
    assert scaled is not None
    triggers = {trigger["type"]: trigger for trigger in scaled["spec"]["triggers"]}
    assert sorted(triggers) == ["kafka", "metrics-api"], scaled["spec"]["triggers"]
    assert triggers["kafka"]["metadata"]["topic"] == names.items_topic
    leases = triggers["metrics-api"]
    assert leases["metricType"] == "AverageValue"
    assert leases["metadata"]["format"] == "prometheus"
    assert leases["metadata"]["targetValue"] == "7"
    url = urlsplit(leases["metadata"]["url"])
    # The host names the campaign's worker Service (as KEDA resolves it from its namespace)
    # and the port is one the Service serves.
    assert url.hostname == f"{names.worker}.{namespace}.svc"
    service = get_object(kube_api, "v1", "Service", namespace, names.worker)
    assert service is not None
    assert url.port in [port["port"] for port in service["spec"]["ports"]]

    # The pod the Deployment describes, run as a local process: at the trigger's path it
    # serves the gauge the trigger names, every sample of the exposition parsing.
    wait_campaign(kube_api, namespace, KEDA_NAME, is_ready, "Ready", operator=operator)
    state = tmp_path / "pods"
    state.mkdir()
    pods = podrunner.start_pods(kube_api, namespace, names.worker, state, replicas=1)
    try:
        (pod,) = pods
        pod.wait_ready()
        reply = requests.get(f"{pod.url}{url.path}", timeout=10)
        assert reply.status_code == 200, reply.text
        assert gauge_values(reply.text)[leases["metadata"]["valueLocation"]] == 0
    finally:
        podrunner.stop_pods(pods, state)
