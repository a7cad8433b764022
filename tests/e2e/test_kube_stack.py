"""Smoke tests proving the local control plane is a real one: controllers, scheduler, kwok
nodes, garbage collection, quota admission and RBAC all act, not just the API's storage."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from devstack.procs import TimedOut, poll_until
from gotools import stack_tool

pytestmark = pytest.mark.e2e

T = TypeVar("T")
TIMEOUT = 90.0


def eventually(
    probe: Callable[[], T], what: str, until: Callable[[T], object] = bool, timeout: float = TIMEOUT
) -> T:
    """Poll probe until until(result) holds (default: result is truthy); fail with what it
    saw last."""
    try:
        return poll_until(probe, timeout, until=until, interval=0.25, retry_on=(ApiException,))
    except TimedOut as out:
        last = out.last
        if isinstance(last, ApiException):  # e.g. 404 before a controller created the object
            last = f"{last.status} {last.reason}"
        pytest.fail(f"not {what} within {timeout:.0f}s; last seen: {last}")


@pytest.fixture
def namespace(kube_api: ApiClient) -> Iterator[str]:
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


def deployment(name: str, replicas: int) -> client.V1Deployment:
    labels = {"app": name}
    container = client.V1Container(
        name="main",
        image="registry.invalid/never-pulled:0",  # kwok runs no containers
        resources=client.V1ResourceRequirements(requests={"cpu": "10m", "memory": "16Mi"}),
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[container]),
            ),
        ),
    )


def available(apps: client.AppsV1Api, namespace: str, name: str, replicas: int) -> Any:
    dep: Any = apps.read_namespaced_deployment(name, namespace)  # status fields are optional
    conditions = {c.type: c.status for c in (dep.status.conditions or [])}
    done = conditions.get("Available") == "True" and dep.status.available_replicas == replicas
    return dep if done else None


def kstatus(binary: str, obj: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [binary], input=json.dumps(obj), capture_output=True, text=True, check=True, timeout=30
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_deployment_becomes_available_on_kwok_nodes(kube_api: ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))

    eventually(lambda: available(apps, namespace, "web", 2), "Available with 2 replicas")

    pods: list[Any] = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    nodes = {n.metadata.name for n in core.list_node().items if n.metadata}
    for pod in pods:
        assert pod.status.phase == "Running"
        assert pod.spec.node_name in nodes  # placed by the scheduler on a simulated node
    # The same object judged by kstatus, the rules later tests use for readiness.
    raw = kube_api.sanitize_for_serialization(apps.read_namespaced_deployment("web", namespace))
    assert kstatus(str(stack_tool("kstatus")), raw)["status"] == "Current"


def test_deleting_owner_garbage_collects_dependents(kube_api: ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    owner: Any = apps.create_namespaced_deployment(namespace, deployment("owner", replicas=1))
    eventually(lambda: available(apps, namespace, "owner", 1), "Available")
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(
                name="owned",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="apps/v1", kind="Deployment",
                        name=owner.metadata.name, uid=owner.metadata.uid,
                    )
                ],
            ),
            data={"k": "v"},
        ),
    )  # fmt: skip

    def dependents() -> list[str]:
        found: list[Any] = [
            *apps.list_namespaced_replica_set(namespace).items,
            *core.list_namespaced_pod(namespace).items,
            *core.list_namespaced_config_map(namespace, field_selector="metadata.name=owned").items,
        ]
        return sorted(type(obj).__name__ for obj in found)

    assert dependents() == ["V1ConfigMap", "V1Pod", "V1ReplicaSet"]
    apps.delete_namespaced_deployment(
        "owner", namespace, body=client.V1DeleteOptions(propagation_policy="Background")
    )
    eventually(dependents, "garbage-collected", until=lambda left: left == [])


def test_resource_quota_reports_usage_and_is_enforced(kube_api: ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_resource_quota(
        namespace,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="quota"),
            spec=client.V1ResourceQuotaSpec(hard={"pods": "3", "requests.cpu": "500m"}),
        ),
    )
    # Quota admission refuses pods until the controller has computed the first usage.
    eventually(
        lambda: _used_if(core.read_namespaced_resource_quota("quota", namespace)),
        "given a first usage by the resourcequota controller",
    )
    core.create_namespaced_pod(namespace, pod("small", cpu="200m"))

    want = {"pods": "1", "requests.cpu": "200m"}
    used = eventually(
        lambda: _used_if(core.read_namespaced_resource_quota("quota", namespace), want),
        f"reporting used={want}",
    )
    assert used == want

    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, pod("big", cpu="400m"))
    assert refused.value.status == 403
    assert "exceeded quota" in str(refused.value.body)


def pod(name: str, cpu: str) -> client.V1Pod:
    container = client.V1Container(
        name="main",
        image="registry.invalid/never-pulled:0",
        resources=client.V1ResourceRequirements(requests={"cpu": cpu}),
    )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name), spec=client.V1PodSpec(containers=[container])
    )


def _used_if(
    quota: client.V1ResourceQuota, want: dict[str, str] | None = None
) -> dict[str, str] | None:
    """status.used once the controller has set it (and, with want, once it equals want)."""
    used = quota.status.used if quota.status else None
    if used is None or (want is not None and used != want):
        return None
    return dict(used)


def test_rbac_denies_until_a_role_binds(kube_api: ApiClient, namespace: str) -> None:
    auth, rbac = client.AuthorizationV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    user = f"system:serviceaccount:{namespace}:reader"

    def may_list_pods() -> bool:
        review = client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user,
                groups=["system:serviceaccounts", "system:authenticated"],
                resource_attributes=client.V1ResourceAttributes(
                    namespace=namespace, verb="list", resource="pods"
                ),
            )
        )
        status = auth.create_subject_access_review(review).status
        return bool(status and status.allowed)

    assert not may_list_pods()
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                      name="pod-reader"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader",
                                           namespace=namespace)],
        ),
    )  # fmt: skip
    # The RBAC authorizer reads roles through an informer, so allow a moment to catch up.
    eventually(may_list_pods, "allowed after the RoleBinding")
