"""Run a Deployment's pods as local processes, exactly as its pod template says.

The local control plane simulates nodes with kwok, so no container ever runs. The demo and
the end-to-end tests still need real workers: this module resolves the pod template the
operator wrote (command, args, env values, configMapKeyRef, secretKeyRef, envFrom with
prefix) against the live API and starts one process per replica. A mistake in what the
operator writes therefore fails here the way it would fail in a real pod.

No cluster DNS resolves a Service's name here: `service_urls` maps in-cluster URLs (e.g.
http://med-worker.ns.svc:8080, as a pool router's config names its members) to the local
processes serving them, replaced wherever they occur in the resolved environment.
"""

from __future__ import annotations

import base64
import os
import signal
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from devstack.procs import (
    Started,
    free_port,
    start_process,
    stop_pidfile,
    wait_until,
)

WORKER_PORT_ENV = "LABELOPS_WORKER_PORT"
ROUTER_PORT_ENV = "LABELOPS_ROUTER_PORT"


class TemplateError(RuntimeError):
    """The pod template refers to something that does not exist (a pod would not start)."""


@dataclass
class LocalPod:
    process: Started
    port: int
    env: dict[str, str] = field(repr=False)

    @property
    def name(self) -> str:
        return self.process.name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        """Until /readyz answers 200, as the pod's readiness probe would."""

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as reply:
                return int(reply.status) == 200

        wait_until(self.process, ready, timeout=timeout, what="ready (/readyz)")


def _config_map(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, str]:
    return dict(core.read_namespaced_config_map(name, namespace).data or {})


def _secret(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, str]:
    data = core.read_namespaced_secret(name, namespace).data or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def _lookup(
    core: client.CoreV1Api, namespace: str, kind: str, name: str, key: str, optional: bool
) -> str | None:
    try:
        data = (_config_map if kind == "configmap" else _secret)(core, namespace, name)
    except client.ApiException as err:
        if err.status == 404 and optional:
            return None
        raise TemplateError(
            f"{kind} {namespace}/{name} referenced by the pod template: {err.reason}"
        ) from err
    if key not in data:
        if optional:
            return None
        raise TemplateError(f"{kind} {namespace}/{name} has no key {key!r}")
    return data[key]


def resolve_env(
    core: client.CoreV1Api, namespace: str, container: Any, pod_name: str
) -> dict[str, str]:
    """The environment a kubelet would give this container (envFrom first, then env)."""
    env: dict[str, str] = {}
    for source in container.env_from or []:
        prefix = source.prefix or ""
        if source.config_map_ref is not None:
            ref = source.config_map_ref
            data = _config_map(core, namespace, ref.name)
        elif source.secret_ref is not None:
            ref = source.secret_ref
            try:
                data = _secret(core, namespace, ref.name)
            except client.ApiException as err:
                if err.status == 404 and ref.optional:
                    continue
                raise TemplateError(
                    f"secret {namespace}/{ref.name} in envFrom: {err.reason}"
                ) from err
        else:
            continue
        env.update({prefix + k: v for k, v in data.items()})
    for var in container.env or []:
        if var.value_from is None:
            env[var.name] = var.value or ""
            continue
        source = var.value_from
        value: str | None
        if source.config_map_key_ref is not None:
            ref = source.config_map_key_ref
            value = _lookup(core, namespace, "configmap", ref.name, ref.key, bool(ref.optional))
        elif source.secret_key_ref is not None:
            ref = source.secret_key_ref
            value = _lookup(core, namespace, "secret", ref.name, ref.key, bool(ref.optional))
        elif source.field_ref is not None:
            value = {"metadata.name": pod_name, "metadata.namespace": namespace}.get(
                source.field_ref.field_path, ""
            )
        else:
            value = ""
        if value is not None:
            env[var.name] = value
    return env


def local_argv(container: Any) -> list[str]:
    """The container's command and args, with `labelops` run from this Python."""
    argv = [*(container.command or []), *(container.args or [])]
    if not argv:
        raise TemplateError(f"container {container.name} has no command")
    if argv[0] == "labelops":
        return [sys.executable, "-m", "labelops.cli", *argv[1:]]
    return argv


def map_service_urls(env: dict[str, str], service_urls: Mapping[str, str]) -> dict[str, str]:
    """env with every in-cluster URL of service_urls replaced by its local one (longest
    first, so a URL that prefixes another does not cut it)."""
    if not service_urls:
        return env
    order = sorted(service_urls, key=len, reverse=True)
    mapped = {}
    for name, value in env.items():
        for cluster_url in order:
            value = value.replace(cluster_url, service_urls[cluster_url])
        mapped[name] = value
    return mapped


def start_pods(
    api: client.ApiClient,
    namespace: str,
    deployment: str,
    state_dir: Path,
    replicas: int | None = None,
    extra_env: dict[str, str] | None = None,
    *,
    port_env: str = WORKER_PORT_ENV,
    service_urls: Mapping[str, str] | None = None,
) -> list[LocalPod]:
    """Start one local process per replica of the Deployment's first container.

    Each listens on a free port, given in port_env (the worker's by default; ROUTER_PORT_ENV
    for a pool router); service_urls map in-cluster URLs to local ones (map_service_urls);
    extra_env is applied last, as it is."""
    core = client.CoreV1Api(api)
    dep = client.AppsV1Api(api).read_namespaced_deployment(deployment, namespace)
    pod_spec: Any = dep.spec.template.spec
    container = pod_spec.containers[0]
    count = int(dep.spec.replicas or 0) if replicas is None else replicas
    pods = []
    for index in range(count):
        pod_name = f"{deployment}-local-{index}"
        port = free_port()
        env = map_service_urls(
            resolve_env(core, namespace, container, pod_name), service_urls or {}
        )
        env[port_env] = str(port)
        env.update(extra_env or {})
        started = start_process(pod_name, local_argv(container), state_dir, env=env)
        pods.append(LocalPod(started, port, env))
    return pods


def stop_pods(pods: list[LocalPod], state_dir: Path) -> None:
    for pod in pods:
        stop_pidfile(state_dir / f"{pod.name}.pid")


def kill_pod(pod: LocalPod) -> None:
    """SIGKILL, as when a node dies: nothing gets to clean up. To the pod's whole process
    group (start_process starts a session): a worker's HTTP processes die with it."""
    os.killpg(pod.process.pid, signal.SIGKILL)
