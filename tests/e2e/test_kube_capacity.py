"""The local control plane is sized for a thousand campaigns, like a real cluster would be:
room for >= 1,000 pods on its simulated nodes, a Service range of at least a /16, and the
apiserver's and controllers' throughput limits raised above their defaults.

Each figure is read back from the running control plane (node status, the apiserver's
address allocator, the processes' command lines), not from devstack's constants.
"""

from __future__ import annotations

import ipaddress
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

pytestmark = pytest.mark.e2e

CAMPAIGNS = 1_000
SERVICE_PREFIX_AT_MOST = 16


@pytest.fixture
def namespace(kube_api: ApiClient) -> Iterator[str]:
    name = f"capacity-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


def test_nodes_hold_pods_for_a_thousand_campaigns(kube_api: ApiClient) -> None:
    nodes: list[Any] = client.CoreV1Api(kube_api).list_node().items
    ready = [n for n in nodes if _ready(n)]
    pods = sum(int(n.status.allocatable["pods"]) for n in ready)
    assert pods >= CAMPAIGNS, (
        f"{len(ready)} Ready node(s) allocate {pods} pods in all; want >= {CAMPAIGNS}"
    )


def _ready(node: Any) -> bool:
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _service_network(kube_api: ApiClient) -> ipaddress.IPv4Network:
    """The /16 that holds the `kubernetes` Service's address (the range's first address)."""
    service: Any = client.CoreV1Api(kube_api).read_namespaced_service("kubernetes", "default")
    first = ipaddress.IPv4Address(service.spec.cluster_ip)
    return ipaddress.IPv4Network(f"{first}/{SERVICE_PREFIX_AT_MOST}", strict=False)


def test_service_range_is_at_least_a_slash_16(kube_api: ApiClient, namespace: str) -> None:
    # The apiserver refuses a clusterIP outside its range, so the last address of the /16
    # is accepted only if the configured range covers the whole /16.
    wanted = str(_service_network(kube_api).broadcast_address - 1)
    created: Any = client.CoreV1Api(kube_api).create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="far-end"),
            spec=client.V1ServiceSpec(
                cluster_ip=wanted, ports=[client.V1ServicePort(port=80, target_port=8080)]
            ),
        ),
    )
    assert created.spec.cluster_ip == wanted


def _flags(stack_dir: Path, process: str) -> dict[str, str]:
    """--key=value flags of a running process of the stack; a repeated flag's last value wins,
    as Go's flag parsing does."""
    pid = int((stack_dir / f"{process}.pid").read_text().strip())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    flags: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if arg.startswith("--") and sep:
            flags[key.removeprefix("--")] = value
    return flags


@pytest.mark.parametrize(
    ("process", "flag", "at_least"),
    [
        ("kube-apiserver", "max-requests-inflight", 800),  # default 400
        ("kube-apiserver", "max-mutating-requests-inflight", 400),  # default 200
        ("kube-controller-manager", "kube-api-qps", 100),  # default 20
        ("kube-controller-manager", "kube-api-burst", 200),  # default 30
        ("kube-scheduler", "kube-api-qps", 100),  # default 50
        ("kube-scheduler", "kube-api-burst", 200),  # default 100
    ],
)
def test_throughput_limits_are_raised(
    stack_env: dict[str, str], kube_api: ApiClient, process: str, flag: str, at_least: int
) -> None:
    stack_dir = Path(stack_env.get("LABELOPS_STACK_DIR") or os.environ["LABELOPS_STACK_DIR"])
    flags = _flags(stack_dir, process)
    assert flag in flags, f"{process} runs without --{flag}; its flags: {sorted(flags)}"
    assert float(flags[flag]) >= at_least, f"{process} --{flag}={flags[flag]}; want >= {at_least}"
