"""What the terminal says while the stack's Go tools build: step i of n, time so far, the
usual time from earlier builds (their median), and that a first build has no usual time."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from devstack.build_progress import (
    KEEP,
    BuildStep,
    BuildTimes,
    describe,
    plan_message,
    step_message,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0 s"), (45, "45 s"), (60, "1 min 00 s"), (200, "3 min 20 s"), (3720, "1 h 02 min")],
)
def test_durations_read_at_a_glance(seconds: float, text: str) -> None:
    assert describe(seconds) == text


def test_usual_is_the_median_of_the_last_builds(tmp_path: Path) -> None:
    times = BuildTimes.in_cache(tmp_path)
    assert times.usual("etcd") is None
    for seconds in (100, 300, 200):
        times.record("etcd", "v3.7.3", seconds)
    assert times.usual("etcd") == 200
    for _ in range(KEEP):
        times.record("etcd", "v3.7.3", 50)
    # Only the last KEEP builds count: this machine as it is now.
    assert times.usual("etcd") == 50
    assert len(json.loads((tmp_path / "build-times.json").read_text())["etcd"]) == KEEP


def test_an_unreadable_history_gives_no_estimate_and_is_rewritten(tmp_path: Path) -> None:
    (tmp_path / "build-times.json").write_text("{not json")
    times = BuildTimes.in_cache(tmp_path)
    assert times.usual("helm") is None
    times.record("helm", "v3.22.0", 42)
    assert times.usual("helm") == 42


def test_the_plan_says_how_many_builds_and_how_long_they_usually_take(tmp_path: Path) -> None:
    times = BuildTimes.in_cache(tmp_path)
    assert plan_message("kube", ["etcd", "kwok"], times) == (
        "kube: 2 Go builds to do (etcd, kwok); no earlier build recorded on this machine"
    )
    times.record("etcd", "v3.7.3", 90)
    assert plan_message("kube", ["etcd", "kwok"], times) == (
        "kube: 2 Go builds to do (etcd, kwok); usually 1 min 30 s in all, "
        "plus 1 never built here before"
    )


def test_a_step_says_which_of_how_many_how_long_so_far_and_usually() -> None:
    assert step_message("kube", "kube-apiserver", "v1.37.2", 2, 7, 75, 240) == (
        "kube: step 2 of 7: building kube-apiserver v1.37.2: 1 min 15 s so far (usually 4 min 00 s)"
    )
    assert step_message("kube", "kwok", "v0.8.0", 7, 7, 30, None, done=True) == (
        "kube: step 7 of 7: built kwok v0.8.0 in 30 s (first build here, no usual time yet)"
    )


def test_a_step_announces_itself_finishes_and_records_its_duration(tmp_path: Path) -> None:
    times = BuildTimes.in_cache(tmp_path)
    out = io.StringIO()
    with BuildStep(times, "kstatus", "v0.37.0", index=1, total=1, prefix="kube", out=out):
        pass
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("kube: step 1 of 1: building kstatus v0.37.0: 0 s so far")
    assert lines[-1].startswith("kube: step 1 of 1: built kstatus v0.37.0 in 0 s")
    assert times.usual("kstatus") is not None


def test_a_failed_step_says_so_and_records_nothing(tmp_path: Path) -> None:
    times = BuildTimes.in_cache(tmp_path)
    out = io.StringIO()
    with (
        pytest.raises(RuntimeError),
        BuildStep(times, "helm", "v3.22.0", index=3, total=4, prefix="kube", out=out),
    ):
        raise RuntimeError("go build exit 1")
    assert (
        out.getvalue()
        .splitlines()[-1]
        .startswith("kube: step 3 of 4: building helm v3.22.0 failed after")
    )
    assert times.usual("helm") is None
