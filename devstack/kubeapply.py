"""`kubectl apply` for the demo and the tests: create or patch any manifest, wait for CRDs."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, dynamic
from kubernetes.dynamic.exceptions import NotFoundError

FIELD_MANAGER = "labelops-devstack"


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def apply(api: client.ApiClient, docs: Iterable[dict[str, Any]]) -> None:
    """Server-side apply each document, creating its namespace first when it has one."""
    dyn = dynamic.DynamicClient(api)
    for doc in docs:
        namespace = doc.get("metadata", {}).get("namespace")
        if namespace:
            ensure_namespace(api, namespace)
        resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        resource.server_side_apply(
            body=doc,
            name=doc["metadata"]["name"],
            namespace=namespace,
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )


def ensure_namespace(api: client.ApiClient, name: str) -> None:
    core = client.CoreV1Api(api)
    try:
        core.read_namespace(name)
    except client.ApiException as err:
        if err.status != 404:
            raise
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))


def wait_crd_established(api: client.ApiClient, name: str, timeout: float = 60) -> None:
    ext = client.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            crd = ext.read_custom_resource_definition(name)
        except client.ApiException as err:
            if err.status != 404:
                raise
        else:
            conditions = crd.status.conditions or [] if crd.status else []
            if any(c.type == "Established" and c.status == "True" for c in conditions):
                # Discovery caches lag behind Established; make sure the dynamic client sees it.
                try:
                    dynamic.DynamicClient(api).resources.get(
                        group=crd.spec.group, kind=crd.spec.names.kind
                    )
                    return
                except (NotFoundError, ValueError):
                    pass
        time.sleep(0.2)
    raise TimeoutError(f"CustomResourceDefinition {name} was not Established within {timeout}s")


def install_crds(api: client.ApiClient, crd_dir: Path) -> None:
    for path in sorted(crd_dir.glob("*.yaml")):
        docs = load_documents(path)
        apply(api, docs)
        for doc in docs:
            wait_crd_established(api, doc["metadata"]["name"])
