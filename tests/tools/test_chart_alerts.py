"""The chart's alert rules, rendered by helm and evaluated by Prometheus's PromQL engine.

Each case loads campaign series in Prometheus's own test-script format (promqltest) and
states which campaigns the alert's expression selects, and with what value. `for:` is not
evaluated here; the expression is what decides who gets paged.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from devstack.stack import REPO_ROOT
from gotools import go_tool, stack_tool

# The first run builds a Go tool (helm, kstatus, ...) on a cold cache: minutes, not seconds.
pytestmark = pytest.mark.timeout(1800)

CHART = REPO_ROOT / "charts" / "labelops"

# Deadlines are Unix seconds; the engine's clock starts at 0, so `at 10m` is time() == 600.
SCRIPTS = {
    "LabelingCampaignStalled": """
load 1m
  labelops_campaign_condition{namespace="ml",name="stuck",type="Stalled",status="True"} 1x10
  labelops_campaign_condition{namespace="ml",name="stuck",type="Stalled",status="False"} 0x10
  labelops_campaign_condition{namespace="ml",name="fine",type="Stalled",status="True"} 0x10
  labelops_campaign_condition{namespace="ml",name="fine",type="Stalled",status="False"} 1x10
  labelops_campaign_condition{namespace="ml",name="fine",type="Ready",status="True"} 1x10

eval instant at 5m {expr}
  labelops_campaign_condition{namespace="ml",name="stuck",type="Stalled",status="True"} 1
""",
    "LabelingCampaignPastDeadline": """
load 1m
  labelops_campaign_progress_ratio{namespace="ml",name="late"} 0.5x10
  labelops_campaign_deadline_timestamp_seconds{namespace="ml",name="late"} 300x10
  labelops_campaign_progress_ratio{namespace="ml",name="done"} 1x10
  labelops_campaign_deadline_timestamp_seconds{namespace="ml",name="done"} 300x10
  labelops_campaign_progress_ratio{namespace="ml",name="early"} 0.5x10
  labelops_campaign_deadline_timestamp_seconds{namespace="ml",name="early"} 100000x10
  labelops_campaign_progress_ratio{namespace="ml",name="open-ended"} 0.2x10

eval instant at 10m {expr}
  labelops_campaign_progress_ratio{namespace="ml",name="late"} 0.5
""",
    "LabelingCampaignBehindDeadline": """
load 1m
  labelops_campaign_eta_timestamp_seconds{namespace="ml",name="slow"} 5000x10
  labelops_campaign_deadline_timestamp_seconds{namespace="ml",name="slow"} 2000x10
  labelops_campaign_eta_timestamp_seconds{namespace="ml",name="on-time"} 1000x10
  labelops_campaign_deadline_timestamp_seconds{namespace="ml",name="on-time"} 2000x10
  labelops_campaign_eta_timestamp_seconds{namespace="other",name="slow"} 9000x10

eval instant at 5m {expr}
  {namespace="ml",name="slow"} 3000
""",
    # Only campaigns with model.autoAccept have the series; 1 = trusted.
    "ModelDistrusted": """
load 1m
  labelops_campaign_model_trusted{namespace="ml",name="braked"} 0x10
  labelops_campaign_model_trusted{namespace="ml",name="proven"} 1x10

eval instant at 5m {expr}
  labelops_campaign_model_trusted{namespace="ml",name="braked"} 0
""",
    # alpha below the campaign's own minAgreement; no floor, no alert.
    "AgreementLow": """
load 1m
  labelops_campaign_agreement_alpha{namespace="ml",name="sloppy"} 0.41x10
  labelops_campaign_min_agreement{namespace="ml",name="sloppy"} 0.6x10
  labelops_campaign_agreement_alpha{namespace="ml",name="careful"} 0.82x10
  labelops_campaign_min_agreement{namespace="ml",name="careful"} 0.6x10
  labelops_campaign_agreement_alpha{namespace="ml",name="no-floor"} 0.1x10
  labelops_campaign_agreement_alpha{namespace="other",name="sloppy"} 0.5x10

eval instant at 5m {expr}
  {namespace="ml",name="sloppy"} 0.41
""",
}


@pytest.fixture(scope="module")
def alert_exprs() -> dict[str, str]:
    helm = stack_tool("helm")
    rendered = subprocess.run(
        [str(helm), "template", "rel", str(CHART), "--set", "metrics.prometheusRule.enabled=true"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    [rule] = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "PrometheusRule"]
    # promqltest wants the query on the eval line: fold the multi-line expressions.
    return {
        r["alert"]: " ".join(r["expr"].split()) for g in rule["spec"]["groups"] for r in g["rules"]
    }


@pytest.fixture(scope="module")
def promql_scripts() -> Path:
    return go_tool("promql-scripts", "stack/gitops-tools", "./promqlscripts", test_binary=True)


def test_every_alert_has_a_case(alert_exprs: dict[str, str]) -> None:
    assert set(alert_exprs) == set(SCRIPTS)


@pytest.mark.parametrize("alert", sorted(SCRIPTS))
def test_alert_selects_exactly_the_campaigns_at_fault(
    alert: str, alert_exprs: dict[str, str], promql_scripts: Path, tmp_path: Path
) -> None:
    (tmp_path / f"{alert}.test").write_text(SCRIPTS[alert].replace("{expr}", alert_exprs[alert]))
    run = subprocess.run(
        [str(promql_scripts), "-test.v"],
        env={**os.environ, "PROMQL_SCRIPTS": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
