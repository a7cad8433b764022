"""The Argo CD health check of LabelingCampaign, run in gopher-lua as Argo CD runs it.

The fixtures are in Argo CD's own format (health_test.yaml + testdata/), so the directory can
be contributed upstream or dropped into argocd-cm as is; each case is also checked against
the API models, so a fixture cannot describe a campaign the operator would never write.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.stack import REPO_ROOT
from gotools import go_tool
from labelops.api.campaign import CampaignSpec, CampaignStatus

# The first run builds a Go tool (helm, kstatus, ...) on a cold cache: minutes, not seconds.
pytestmark = pytest.mark.timeout(1800)

CHECK_DIR = REPO_ROOT / "gitops" / "argocd" / "labelops.dev" / "LabelingCampaign"
CASES: list[dict[str, Any]] = yaml.safe_load((CHECK_DIR / "health_test.yaml").read_text())["tests"]


@pytest.fixture(scope="module")
def argocd_health() -> Path:
    return go_tool("argocd-health", "stack/gitops-tools", "./argocd-health")


@pytest.fixture(scope="module")
def verdicts(argocd_health: Path) -> dict[str, dict[str, Any]]:
    run = subprocess.run(
        [str(argocd_health), str(CHECK_DIR)], capture_output=True, text=True, timeout=60
    )
    # Exit 1 means "some case differs", which the per-case tests report one by one.
    assert run.returncode in (0, 1), run.stderr
    return {r["inputPath"]: r for r in json.loads(run.stdout)}


def _evaluate(
    argocd_health: Path, script: Path, obj: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(argocd_health), "-script", str(script)],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health_of_fixture(case: dict[str, Any], verdicts: dict[str, dict[str, Any]]) -> None:
    verdict = verdicts[case["inputPath"]]
    assert verdict.get("error") is None, verdict["error"]
    assert verdict["actual"] == case["healthStatus"]


def test_every_argo_state_a_campaign_can_reach_is_covered() -> None:
    covered = {case["healthStatus"]["status"] for case in CASES}
    assert covered == {"Healthy", "Progressing", "Degraded", "Suspended"}


def test_every_testdata_file_is_a_case() -> None:
    on_disk = {f"testdata/{p.name}" for p in (CHECK_DIR / "testdata").glob("*.yaml")}
    assert on_disk == {case["inputPath"] for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_fixture_is_a_campaign_the_api_accepts(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((CHECK_DIR / case["inputPath"]).read_text())
    assert obj["apiVersion"] == "labelops.dev/v1alpha1"
    assert obj["kind"] == "LabelingCampaign"
    CampaignSpec.model_validate(obj["spec"])
    CampaignStatus.model_validate(obj.get("status", {}))


def test_stalled_verdict_of_an_old_generation_waits_for_the_new_one(argocd_health: Path) -> None:
    """A fix pushed through Git must not keep showing Degraded until the operator sees it."""
    obj = yaml.safe_load((CHECK_DIR / "testdata" / "stalled.yaml").read_text())
    obj["metadata"]["generation"] = 3
    run = _evaluate(argocd_health, CHECK_DIR / "health.lua", obj)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["status"] == "Progressing"


def test_runner_opens_only_the_libraries_argo_cd_opens(argocd_health: Path, tmp_path: Path) -> None:
    """Otherwise a check using string.* would pass here and fail inside Argo CD."""
    script = tmp_path / "health.lua"
    script.write_text('return {status = "Healthy", message = string.format("%d", 1)}\n')
    run = _evaluate(argocd_health, script, {"metadata": {"name": "x"}})
    assert run.returncode != 0
    assert "string" in run.stderr
