"""The gold verdict: Wilson upper bound below the bar, after enough answers."""

from __future__ import annotations

import pytest

from labelops.quality.gold import gold_verdict
from labelops.quality.intervals import wilson


def test_no_verdict_before_min_answers():
    v = gold_verdict(0, 9, min_answers=10, min_accuracy=0.8)
    assert not v.blocked and "10 needed" in v.reason


def test_random_clicker_is_blocked_careful_labeler_is_not():
    clicker = gold_verdict(5, 10, 10, 0.8)
    assert clicker.blocked
    assert clicker.interval == wilson(5, 10)
    assert "gold.minAccuracy" in clicker.reason and "5 of 10" in clicker.reason
    careful = gold_verdict(7, 10, 10, 0.8)  # 70% on 10 answers: upper bound ~0.89
    assert not careful.blocked


def test_boundary_follows_the_wilson_upper_bound():
    for correct in range(0, 31):
        v = gold_verdict(correct, 30, 10, 0.8)
        assert v.blocked == (wilson(correct, 30).high < 0.8)


def test_bad_rule_is_refused():
    with pytest.raises(ValueError, match="min_accuracy=0"):
        gold_verdict(1, 2, 1, 0)
    with pytest.raises(ValueError, match="min_answers=0"):
        gold_verdict(1, 2, 0, 0.8)
