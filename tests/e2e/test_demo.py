"""`make demo` is the README's first command: it must take a campaign to Completed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_demo_takes_the_example_campaign_to_completed_and_exports_rlhf_pairs(
    stack_env: dict[str, str],
) -> None:
    state_dir = Path(stack_env["LABELOPS_STACK_DIR"])
    done = subprocess.run(
        [sys.executable, "-m", "devstack.demo", "--timeout", "420"],
        env={**os.environ, **stack_env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Completed" in out
    assert "900/900" in out
    assert "relayed to Kafka topic labelops.human-data.helpfulness-q4.labels: 900 distinct" in out
    assert "429 daily quota" in out, "the eager labeler should have met its daily quota"
    assert "skipped" in out

    pairs = [
        json.loads(line)
        for line in (state_dir / "demo" / "helpfulness-q4.rlhf.jsonl").read_text().splitlines()
    ]
    assert 250 <= len(pairs) <= 300
    for pair in pairs:
        assert set(pair) >= {"prompt", "chosen", "rejected", "agreement", "votes"}
        assert pair["chosen"] != pair["rejected"]
        assert 0.5 <= pair["agreement"] <= 1.0
