"""The chaos suite, short: 8 labelers, every single fault once, each held 2 s (`make chaos`
runs 32 labelers, the combinations too, and writes the report). Starts its own
private PostgreSQL and Kafka under a temporary directory: it kills them.

A failure names the fault and what broke: a label acknowledged but lost, a 5xx other than a
503 with Retry-After, /readyz that did not follow the outage, a worker that did not recover
by itself, a retry with the same Idempotency-Key answered with another label.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from chaos.suite import SINGLE_FAULTS, SuiteConfig, run_suite

pytestmark = pytest.mark.integration


def test_every_fault_keeps_every_acknowledged_label_and_recovers_by_itself(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Not under pytest's base temp: a later pytest session anywhere on the machine makes
    # that 0700, and PostgreSQL, which runs as its own user when we are root, restarts here.
    state_dir = Path(tempfile.mkdtemp(prefix="chaos-short-", dir="/tmp"))
    config = SuiteConfig(
        labelers=8,
        hold_seconds=2.0,
        warmup_labels=60,
        items_ahead=600,
        state_dir=state_dir,
        log_dir=tmp_path_factory.mktemp("chaos-logs"),
    )
    try:
        results = run_suite(config, SINGLE_FAULTS)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    failed = {r.name: r.failures for r in results if not r.passed}
    assert not failed, f"faults that broke a promise: {failed}"
    assert all(r.labels_lost == 0 for r in results)
    assert all(r.verdict.acknowledged > 0 for r in results)
