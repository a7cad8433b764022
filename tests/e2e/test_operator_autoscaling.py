"""spec.workers.autoscaling on the real API server: the operator writes the HPA and leaves
replicas alone (an HPA-like write of replicas survives the operator's passes), and takes
them back at 0 once the target is met."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from test_operator_harness import (
    Operator,
    apply,
    campaign_documents,
    crd_namespace,
    get_campaign,
    get_object,
    module_operator,
    patch_spec,
    poll,
    wait_campaign,
)

from labelops.api.naming import CampaignNames

pytestmark = pytest.mark.e2e

NAME = "scaled"


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
