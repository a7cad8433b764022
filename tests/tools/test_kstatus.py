"""kstatus (sigs.k8s.io/cli-utils) reads a campaign's health the way Flux and `kubectl wait`
tooling do: no labelops-specific code, only Ready/Reconciling/Stalled and observedGeneration.

The objects are the Argo CD fixtures, so both GitOps tools are judged on the same campaigns.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.stack import REPO_ROOT
from gotools import stack_tool

# The first run builds a Go tool (helm, kstatus, ...) on a cold cache: minutes, not seconds.
pytestmark = pytest.mark.timeout(1800)

TESTDATA = REPO_ROOT / "gitops" / "argocd" / "labelops.dev" / "LabelingCampaign" / "testdata"


@pytest.fixture(scope="module")
def kstatus() -> Path:
    return stack_tool("kstatus")


def compute(kstatus: Path, obj: dict[str, Any]) -> dict[str, Any]:
    run = subprocess.run(
        [str(kstatus)], input=json.dumps(obj), capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    result: dict[str, Any] = json.loads(run.stdout)
    return result


def fixture(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((TESTDATA / f"{name}.yaml").read_text())
    return obj


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ready", "Current"),
        ("completed", "Current"),
        # kstatus has no "suspended": a paused campaign is settled, so a Flux apply completes.
        ("paused", "Current"),
        ("provisioning", "InProgress"),
        # Ready=False without Reconciling/Stalled: kstatus falls back to the Ready condition.
        ("ready-false", "InProgress"),
        ("spec-change-not-observed", "InProgress"),
        ("stalled", "Failed"),
        ("deleting", "Terminating"),
    ],
)
def test_kstatus_of_campaign(kstatus: Path, name: str, expected: str) -> None:
    assert compute(kstatus, fixture(name))["status"] == expected


def test_spec_change_not_yet_observed_names_both_generations(kstatus: Path) -> None:
    result = compute(kstatus, fixture("spec-change-not-observed"))
    assert result["message"] == (
        "LabelingCampaign generation is 2, but latest observed generation is 1"
    )


def test_stalled_campaign_fails_with_the_operators_message(kstatus: Path) -> None:
    result = compute(kstatus, fixture("stalled"))
    assert result["message"].startswith("kafka.partitions may only grow")


def test_a_ready_campaign_whose_spec_changes_is_in_progress_again(kstatus: Path) -> None:
    obj = fixture("ready")
    assert compute(kstatus, obj)["status"] == "Current"
    obj["metadata"]["generation"] += 1
    assert compute(kstatus, obj)["status"] == "InProgress"


def test_a_campaign_without_status_counts_as_current(kstatus: Path) -> None:
    """kstatus cannot tell "no controller yet" from "nothing to report" and says Current.

    This is why the operator must write observedGeneration and Reconciling=True on first
    sight, and why docs/gitops.md gives Flux users a healthCheckExprs entry that waits for
    Ready instead. If kstatus ever changes this, update that page.
    """
    assert compute(kstatus, fixture("new"))["status"] == "Current"
