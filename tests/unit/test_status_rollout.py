"""WorkersReady from the worker Deployment's status (pure)."""

from __future__ import annotations

from typing import Any

from labelops.operator.rollout import workers_verdict


def deployment(desired: int, generation: int = 2, observed: int = 2, **status: int) -> Any:
    return {
        "metadata": {"name": "c-worker", "generation": generation},
        "spec": {"replicas": desired},
        "status": {"observedGeneration": observed, **status},
    }


def test_no_deployment_yet() -> None:
    verdict = workers_verdict(None)
    assert (verdict.status.value, verdict.reason) == ("False", "Pending")


def test_ready_when_all_desired_replicas_are_available_and_updated() -> None:
    verdict = workers_verdict(deployment(2, replicas=2, updatedReplicas=2, availableReplicas=2))
    assert (verdict.status.value, verdict.reason) == ("True", "Available")
    assert verdict.message == "2/2 workers available"


def test_rolling_out_while_pods_are_not_yet_available() -> None:
    verdict = workers_verdict(deployment(2, replicas=2, updatedReplicas=2, availableReplicas=1))
    assert (verdict.status.value, verdict.reason) == ("False", "RollingOut")
    assert "1/2 workers available" in verdict.message


def test_old_pods_still_around_is_not_ready() -> None:
    verdict = workers_verdict(deployment(2, replicas=3, updatedReplicas=2, availableReplicas=3))
    assert verdict.status.value == "False"


def test_a_spec_the_controller_has_not_seen_is_not_ready() -> None:
    verdict = workers_verdict(
        deployment(2, generation=3, observed=2, replicas=2, updatedReplicas=2, availableReplicas=2)
    )
    assert (verdict.status.value, verdict.reason) == ("False", "RollingOut")


def test_zero_desired_is_ready_once_the_pods_are_gone() -> None:
    assert workers_verdict(deployment(0, replicas=1)).status.value == "False"
    verdict = workers_verdict(deployment(0))
    assert (verdict.status.value, verdict.reason) == ("True", "ScaledToZero")
