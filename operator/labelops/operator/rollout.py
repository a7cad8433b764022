"""WorkersReady from the worker Deployment as the API server reports it. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labelops.operator.conditions import WORKERS_READY, Reason, Verdict


def workers_verdict(deployment: Mapping[str, Any] | None) -> Verdict:
    """Ready when the rollout of the Deployment's current spec is complete.

    Zero desired replicas (paused or completed) is ready once no pod is left.
    """
    if deployment is None:
        return Verdict.false(WORKERS_READY, Reason.PENDING, "worker Deployment does not exist yet")
    desired = int(deployment.get("spec", {}).get("replicas", 1))
    status = deployment.get("status") or {}
    generation = int(deployment["metadata"].get("generation", 0))
    total = int(status.get("replicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    # One message for every step of a rollout (the controller reports four or five on its
    # way, each a status write and a watch event per campaign): only the available count.
    rolling = Verdict.false(
        WORKERS_READY, Reason.ROLLING_OUT, f"rolling out: {available}/{desired} workers available"
    )
    if int(status.get("observedGeneration", 0)) < generation:
        return rolling
    if desired == 0:
        if total == 0:
            return Verdict.true(WORKERS_READY, Reason.SCALED_TO_ZERO, "no workers wanted")
        return Verdict.false(
            WORKERS_READY, Reason.ROLLING_OUT, f"scaling down: {total} worker pods remain"
        )
    if updated >= desired and available >= desired and total == desired:
        return Verdict.true(
            WORKERS_READY, Reason.AVAILABLE, f"{available}/{desired} workers available"
        )
    return rolling
