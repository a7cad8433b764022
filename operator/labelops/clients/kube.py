"""Kubernetes: observe and apply the campaign's children, read campaigns, patch their status.

Objects are plain dicts in and out (the same shapes plan.py builds), sent through the
official client's ApiClient so authentication, TLS and kubeconfig handling are its own.
Writes use server-side apply with the field manager "labelops": applying the same object
twice is a no-op on the server, which is what makes reconcile passes idempotent.

Every call blocks, so each public method runs it in a worker thread: the Kopf event loop
keeps serving other campaigns meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from labelops.api.campaign import GROUP, KIND, PLURAL, VERSION
from labelops.api.labeler_pool import KIND as POOL_KIND
from labelops.api.labeler_pool import PLURAL as POOL_PLURAL

FIELD_MANAGER = "labelops"
REQUEST_TIMEOUT = (5, 30)  # connect, read (seconds)

# apiVersion, kind -> plural of the resources labelops reads or writes.
_PLURALS = {
    ("v1", "Secret"): "secrets",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("v1", "ResourceQuota"): "resourcequotas",
    ("apps/v1", "Deployment"): "deployments",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobjects",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentications",
    (f"{GROUP}/{VERSION}", KIND): PLURAL,
    (f"{GROUP}/{VERSION}", POOL_KIND): POOL_PLURAL,
}


class Conflict(Exception):
    """The object changed since it was read (HTTP 409)."""


class KubeError(RuntimeError):
    """The API server refused a request; the message carries its explanation."""


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    plural = _PLURALS[(api_version, kind)]
    root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{root}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def _load_configuration() -> k8s.Configuration:
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(client_configuration=configuration)
    return configuration


class KubeClient:
    def __init__(self, api_client: k8s.ApiClient) -> None:
        self._api = api_client

    @classmethod
    def from_environment(cls) -> KubeClient:
        """In-cluster service account when running in a pod, else KUBECONFIG / ~/.kube/config."""
        configuration = _load_configuration()
        # The default pool (cpu*5) is small for 100 campaigns reconciling at once.
        configuration.connection_pool_maxsize = 32
        return cls(k8s.ApiClient(configuration))

    def close(self) -> None:
        self._api.close()

    # --- plumbing --------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        """One HTTP call; None on 404, Conflict on 409, KubeError on other refusals."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        params = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*params, _request_timeout=REQUEST_TIMEOUT)
        data = response.read()
        if response.status == 404:
            return None
        if response.status == 409:
            raise Conflict(data.decode(errors="replace"))
        if not 200 <= response.status <= 299:
            try:
                message = json.loads(data).get("message") or response.reason
            except ValueError:
                message = data.decode(errors="replace")
            raise KubeError(f"{method} {path}: {response.status} {message}")
        return json.loads(data) if data else {}

    async def _run(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._call, *args, **kwargs)

    # --- generic objects -------------------------------------------------------------

    async def get(
        self, api_version: str, kind: str, namespace: str, name: str, cached: bool = False
    ) -> dict[str, Any] | None:
        """cached: from the API server's watch cache (resourceVersion=0), not a quorum read of
        etcd. Possibly a moment old; for reads whose write is guarded by resourceVersion or
        that a watch event will repeat, so that etcd, the shared bottleneck of a busy control
        plane, serves only writes and the reads that must be current."""
        query = [("resourceVersion", "0")] if cached else None
        return await self._run("GET", object_path(api_version, kind, namespace, name), query=query)

    async def list(self, api_version: str, kind: str, namespace: str) -> list[dict[str, Any]]:
        """The namespace's objects of this kind, from the API server's watch cache."""
        path = object_path(api_version, kind, namespace)
        found = await self._run("GET", path, query=[("resourceVersion", "0")])
        return list((found or {}).get("items") or [])

    async def patch_status(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        """Merge-patch the status subresource; with resource_version, failing with Conflict
        if the object moved on."""
        path = object_path(api_version, kind, namespace, name) + "/status"
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self._run(
            "PATCH", path, body=body, content_type="application/merge-patch+json"
        )

    async def apply(self, obj: Mapping[str, Any], manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply: create if missing, else bring our fields to the given values."""
        meta = obj["metadata"]
        path = object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        result = await self._run(
            "PATCH",
            path,
            body=dict(obj),
            query=[("fieldManager", manager), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )
        assert result is not None, f"apply of {path} returned 404"
        return result

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete if present; False when it was already gone."""
        path = object_path(api_version, kind, namespace, name)
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        return await self._run("DELETE", path, body=body) is not None

    # --- campaigns -------------------------------------------------------------------

    def serves_campaigns(self) -> bool:
        """Whether the API server serves the campaign CRD, read from discovery (open to every
        authenticated user, so it needs no grant). Blocking: called once, before Kopf starts."""
        found = self._call("GET", f"/apis/{GROUP}/{VERSION}") or {}
        return any(resource.get("name") == PLURAL for resource in found.get("resources", []))

    async def serves(self, group_version: str, plural: str) -> bool:
        """Whether the API server serves this resource, read from discovery (no grant)."""
        found = await self._run("GET", f"/apis/{group_version}") or {}
        return any(resource.get("name") == plural for resource in found.get("resources", []))

    async def get_campaign(
        self, namespace: str, name: str, cached: bool = False
    ) -> dict[str, Any] | None:
        return await self.get(f"{GROUP}/{VERSION}", KIND, namespace, name, cached=cached)

    async def patch_campaign_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
    ) -> dict[str, Any] | None:
        """Merge-patch the status subresource, failing with Conflict if the object moved on."""
        return await self.patch_status(
            f"{GROUP}/{VERSION}", KIND, namespace, name, status, resource_version
        )
