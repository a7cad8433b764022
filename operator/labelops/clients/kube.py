"""Kubernetes: observe and apply the campaign's children, read campaigns, patch their status.

Objects are plain dicts in and out (the same shapes plan.py builds), sent through the
official client's ApiClient so authentication, TLS and kubeconfig handling are its own.
Writes use server-side apply with the field manager "labelops": applying the same object
twice is a no-op on the server, which is what makes reconcile passes idempotent.

Every call blocks, so each public method runs it in a worker thread: the Kopf event loop
keeps serving other campaigns meanwhile.

Inside `reusing()` (the periodic resync pass, nothing in the spec changed) the client spares
the API server what it already knows: an apply of exactly what this client applied to that
object less than REAPPLY_SECONDS ago is answered with that apply's result (slim: identity,
owners, a Secret's data, a Deployment's replicas and status), so is a read of one of the
operator's own objects it applied, and a read of one it found missing (or deleted) is
answered "missing". Past REAPPLY_SECONDS, and outside `reusing()`,
every call goes to the server. A thousand idle campaigns resynced every five minutes would
otherwise send a dozen requests each for objects that did not change.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from labelops.api.campaign import GROUP, KIND, PLURAL, VERSION
from labelops.api.labeler_pool import KIND as POOL_KIND
from labelops.api.labeler_pool import PLURAL as POOL_PLURAL

FIELD_MANAGER = "labelops"
REQUEST_TIMEOUT = (5, 30)  # connect, read (seconds)
# How long what this client applied (or found missing) is trusted inside reusing(): an object
# changed or deleted by hand outside the operator's watches is repaired within this long: three
# resync periods, so a thousand idle campaigns re-send each child once in 15 minutes (about
# 9 requests/s in all) rather than every 5 minutes.
REAPPLY_SECONDS = 900.0

_reusing: contextvars.ContextVar[bool] = contextvars.ContextVar("kube_reusing", default=False)


@contextmanager
def reusing() -> Iterator[None]:
    """Within: applies and reads this client already knows the answer to send nothing."""
    token = _reusing.set(True)
    try:
        yield
    finally:
        _reusing.reset(token)


def fingerprint(obj: Mapping[str, Any], manager: str) -> str:
    """What identifies an apply: the object as sent, and who sends it."""
    text = json.dumps({"manager": manager, "object": obj}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Known:
    """What this client last learned of one object path, and when (time.monotonic)."""

    at: float
    # The last apply's fingerprint; None: the object is missing.
    applied: str | None = None
    # What that apply returned, slim and as JSON text (a dict costs several times the
    # memory, a thousand campaigns' dozen objects each).
    text: str | None = None

    @classmethod
    def of(cls, at: float, applied: str, result: Mapping[str, Any]) -> Known:
        return cls(at, applied, json.dumps(slim(result), separators=(",", ":")))

    @property
    def result(self) -> dict[str, Any] | None:
        return None if self.text is None else dict(json.loads(self.text))


def slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What is kept of an applied object, and answered for it inside reusing(): its identity
    and owners, a Secret's data, a Deployment's replicas and status. Not managedFields, pod
    templates or configuration: a thousand campaigns' full objects would cost the operator
    more memory than everything else it holds."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _HEAVY_METADATA}
    kept: dict[str, Any] = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind")}
    kept["metadata"] = copy.deepcopy(meta)
    if obj.get("kind") == "Secret" and "data" in obj:
        kept["data"] = dict(obj["data"])
    if obj.get("kind") == "Deployment":
        kept["spec"] = {"replicas": (obj.get("spec") or {}).get("replicas")}
        kept["status"] = copy.deepcopy(obj.get("status") or {})
    return kept


_HEAVY_METADATA = frozenset({"managedFields", "annotations"})


def reusable(known: Known | None, now: float, applied: str | None = None) -> bool:
    """Whether `known` answers a request now: recent, and for an apply, the same apply."""
    if known is None or now - known.at >= REAPPLY_SECONDS:
        return False
    return applied is None or known.applied == applied


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
        self._known: dict[str, Known] = {}

    def forget(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        """Something changed the object (a watch saw it deleted): ask the server next time."""
        self._known.pop(object_path(api_version, kind, namespace, name), None)

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
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        cached: bool = False,
        ours: bool = False,
    ) -> dict[str, Any] | None:
        """cached: from the API server's watch cache (resourceVersion=0), not a quorum read of
        etcd. Possibly a moment old; for reads whose write is guarded by resourceVersion or
        that a watch event will repeat, so that etcd, the shared bottleneck of a busy control
        plane, serves only writes and the reads that must be current.

        ours: an object only the operator writes (its own Secrets, quota, autoscaler, learner):
        inside reusing(), the last apply's result or a "missing" seen here answers."""
        path = object_path(api_version, kind, namespace, name)
        known = self._known.get(path)
        if ours and _reusing.get() and reusable(known, time.monotonic()):
            assert known is not None
            return known.result
        query = [("resourceVersion", "0")] if cached else None
        found = await self._run("GET", path, query=query)
        if found is None and ours:
            self._known[path] = Known(time.monotonic())
        elif known is not None and known.text is None:
            self._known.pop(path, None)  # no longer missing
        return found

    def assume_missing(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        """The caller knows the object cannot exist (one of ours, never made): inside
        reusing(), a read of it answers "missing" without asking, as if one had."""
        path = object_path(api_version, kind, namespace, name)
        if self._known.get(path) is None:
            self._known[path] = Known(time.monotonic())

    def observed(self, obj: Mapping[str, Any]) -> None:
        """A watch delivered obj: if someone changed its spec (its generation moved from what
        the last apply returned), the next apply goes to the server."""
        meta = obj.get("metadata") or {}
        if (obj.get("apiVersion"), obj.get("kind")) not in _PLURALS:
            return
        path = object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        known = self._known.get(path)
        result = known.result if known is not None else None
        if result is None:
            return
        if (result.get("metadata") or {}).get("generation") != meta.get("generation"):
            self._known.pop(path, None)

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
        sent = fingerprint(obj, manager)
        known = self._known.get(path)
        if _reusing.get() and reusable(known, time.monotonic(), sent):
            assert known is not None
            reused = known.result
            assert reused is not None
            return reused
        result = await self._run(
            "PATCH",
            path,
            body=dict(obj),
            query=[("fieldManager", manager), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )
        assert result is not None, f"apply of {path} returned 404"
        self._known[path] = Known.of(time.monotonic(), sent, result)
        return result

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete if present; False when it was already gone."""
        path = object_path(api_version, kind, namespace, name)
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        found = await self._run("DELETE", path, body=body) is not None
        self._known[path] = Known(time.monotonic())
        return found

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
