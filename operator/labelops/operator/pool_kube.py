"""The few Kubernetes calls the pool side needs beyond KubeClient's: the namespace's
campaigns, a pool, and the pool's status subresource (merge patch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labelops.api.campaign import GROUP, PLURAL, VERSION
from labelops.api.labeler_pool import PLURAL as POOL_PLURAL
from labelops.clients.kube import KubeClient


def _path(namespace: str, plural: str, name: str | None = None) -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


async def list_campaigns(kube: KubeClient, namespace: str) -> list[dict[str, Any]]:
    """The namespace's campaigns, from the API server's watch cache."""
    found = await kube._run("GET", _path(namespace, PLURAL), query=[("resourceVersion", "0")])
    return list((found or {}).get("items") or [])


async def get_pool(kube: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    return await kube._run("GET", _path(namespace, POOL_PLURAL, name))


async def patch_pool_status(
    kube: KubeClient, namespace: str, name: str, status: Mapping[str, Any]
) -> dict[str, Any] | None:
    return await kube._run(
        "PATCH",
        _path(namespace, POOL_PLURAL, name) + "/status",
        body={"status": dict(status)},
        content_type="application/merge-patch+json",
    )
