"""`make demo` is the README's first command: it must take a campaign to Completed, catch
the random clicker on the gold pairs, let the model label part of the items, and export
pairs that follow the careful labelers."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.demo.items import generate

pytestmark = pytest.mark.e2e

ITEMS = 300


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
    assert f"items {ITEMS}/{ITEMS} done" in out
    relayed = re.search(r"\.labels: (\d+) distinct labels of (\d+) stored", out)
    assert relayed and relayed.group(1) == relayed.group(2), out[-3000:]
    assert "429 daily quota" in out, "the eager labeler should have met its daily quota"
    assert "skipped" in out

    # The random clicker is caught on the gold pairs, blocked by the rule, and told so (403).
    assert re.search(r"caught: grace \(careless\) blocked: \d+/\d+ gold pairs right", out), out
    assert "quality.gold: blocked:" in out
    assert "403 blocked" in out
    assert "careful (!)" not in out, "a careful labeler was blocked"

    # The learner's versions were audited, and what the model labeled is accounted for by
    # them. Whether a version proves its threshold within one 300-pair run depends on its
    # audits (one wrong audit among its most confident delays the proof), so the demo may
    # end with the model untrusted; auto-accept itself is proven deterministically in
    # tests/integration/test_lifecycle_auto_accept.py.
    machine = re.search(r"items the model labeled: (\d+) of 300", out)
    assert machine, out[-3000:]
    versions = re.findall(r"builtin-\d+: \d+/\d+ audits right, .*?, (\d+) machine labels", out)
    assert versions, out[-3000:]
    assert sum(int(n) for n in versions) == int(machine.group(1)), out[-3000:]
    spent = re.search(r"human labels spent: (\d+)", out)
    assert spent and int(spent.group(1)) < ITEMS * 3

    assert "the first pair prefers the careful answer" in out
    better = {item.id: item.better for item in generate(ITEMS)}
    pairs = [
        json.loads(line)
        for line in (state_dir / "demo" / "helpfulness-q4.rlhf.jsonl").read_text().splitlines()
    ]
    assert 250 <= len(pairs) <= ITEMS
    assert not any(pair["id"].startswith("gold-") for pair in pairs), "gold pairs exported"
    for pair in pairs:
        assert set(pair) >= {"prompt", "chosen", "rejected", "agreement", "votes"}
        assert pair["chosen"] != pair["rejected"]
        assert 0.0 <= pair["agreement"] <= 1.0
    follows = sum(pair["chosen_id"] == better[pair["id"]] for pair in pairs)
    assert follows >= 0.95 * len(pairs), f"{follows} of {len(pairs)} follow careful labelers"
