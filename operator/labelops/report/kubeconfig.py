"""Kubernetes client configuration for the people-facing commands."""

from __future__ import annotations

from kubernetes import config


def load() -> None:
    """KUBECONFIG (or ~/.kube/config) first, then in-cluster, like kubectl."""
    try:
        config.load_kube_config()
    except config.ConfigException:
        config.load_incluster_config()


def current_namespace() -> str:
    try:
        _, active = config.list_kube_config_contexts()
    except config.ConfigException:
        return "default"
    return str(active.get("context", {}).get("namespace") or "default")
