"""The auto-accept threshold (fixed-sequence Clopper-Pearson) and the drift brake."""

from __future__ import annotations

import random

import pytest
from scipy.stats import binomtest

from labelops.quality.calibration import (
    Audit,
    choose_threshold,
    drift_detected,
    min_sample_to_prove,
)


def perfect(n: int, top: float = 0.99, step: float = 0.001) -> list[Audit]:
    return [Audit(round(top - i * step, 6), True) for i in range(n)]


def exact_lower(k: int, n: int, level: float) -> float:
    return binomtest(k, n, alternative="greater").proportion_ci(level, method="exact").low


@pytest.mark.parametrize(
    ("target", "level", "expected"),
    [(0.95, 0.95, 59), (0.99, 0.95, 299), (0.9, 0.95, 29), (0.95, 0.99, 90), (0.5, 0.5, 1)],
)
def test_min_sample_to_prove(target, level, expected):
    n = min_sample_to_prove(target, level)
    assert n == expected
    assert exact_lower(n, n, level) >= target
    if n > 1:
        assert exact_lower(n - 1, n - 1, level) < target


def test_no_threshold_with_58_perfect_audits():
    decision = choose_threshold(perfect(58), 0.95, 0.95)
    assert decision.threshold is None
    assert decision.tested == []
    assert "58 audits, 59 needed" in decision.reason


def test_threshold_with_59_perfect_audits_is_the_lowest_confidence():
    audits = perfect(59)
    decision = choose_threshold(audits, 0.95, 0.95)
    lowest = min(a.confidence for a in audits)
    assert decision.threshold == lowest
    [test] = decision.tested
    assert (test.n, test.correct, test.passed) == (59, 59, True)
    assert test.lower_bound == pytest.approx(0.05 ** (1 / 59))


def test_bounds_are_scipy_exact_values():
    rng = random.Random(7)
    audits = [Audit(rng.random(), rng.random() < 0.985) for _ in range(600)]
    decision = choose_threshold(audits, 0.95, 0.95)
    assert decision.tested
    for test in decision.tested:
        above = [a for a in audits if a.confidence >= test.threshold]
        assert test.n == len(above)
        assert test.correct == sum(a.correct for a in above)
        assert test.lower_bound == pytest.approx(
            exact_lower(test.correct, test.n, 0.95), rel=1e-9, abs=1e-12
        )
        assert test.passed == (test.lower_bound >= 0.95)


def test_fixed_sequence_stops_at_the_first_failure_even_if_a_lower_threshold_would_pass():
    # 80 perfect audits at high confidence, then 3 wrong ones at 0.80, then 400 right ones
    # below: the threshold 0.80 fails (80 of 83), so the sequence stops there although
    # every threshold below 0.80 alone would pass (e.g. 480 of 483).
    audits = perfect(80, top=0.99, step=0.001)
    audits += [Audit(0.80, False)] * 3
    audits += [Audit(round(0.79 - i * 0.001, 6), True) for i in range(400)]
    decision = choose_threshold(audits, 0.95, 0.95)
    assert [t.passed for t in decision.tested][-1] is False
    assert decision.tested[-1].threshold == 0.80
    assert all(t.passed for t in decision.tested[:-1])
    assert decision.threshold == min(t.threshold for t in decision.tested[:-1])
    assert decision.threshold > 0.80
    assert "testing stopped" in decision.reason
    # A lower threshold would pass on its own: the stop is the rule, not the data.
    alone = choose_threshold(audits, 0.95, 0.95, candidate_thresholds=[0.5])
    assert alone.threshold == 0.5


def test_first_testable_failure_means_no_threshold():
    audits = [*perfect(57), Audit(0.5, False), Audit(0.4, False), *perfect(300, top=0.3)]
    decision = choose_threshold(audits, 0.95, 0.95)
    assert decision.threshold is None
    assert len(decision.tested) == 1 and not decision.tested[0].passed
    assert "no threshold" in decision.reason


def test_candidates_above_the_minimum_sample_are_skipped_not_failed():
    # The five most confident audits sit above thresholds with fewer than 59 audits: those
    # thresholds are not tested; the first test is at the 59th audit from the top.
    audits = perfect(200, top=0.99)
    decision = choose_threshold(audits, 0.95, 0.95)
    assert decision.tested[0].n == 59
    assert decision.tested[0].threshold == audits[58].confidence
    assert decision.threshold == audits[-1].confidence


def test_a_wrong_audit_at_the_top_fails_the_first_test_unless_errors_are_allowed_for():
    audits = [Audit(0.999, False), *perfect(200, top=0.99)]
    strict = choose_threshold(audits, 0.95, 0.95)
    assert strict.threshold is None
    assert (strict.tested[0].n, strict.tested[0].correct) == (59, 58)
    # Starting where one error can still be proven (93 audits) tolerates it.
    tolerant = choose_threshold(
        audits, 0.95, 0.95, min_audits_above=min_sample_to_prove(0.95, 0.95, errors=1)
    )
    assert tolerant.tested[0].n == 93
    assert tolerant.threshold == audits[-1].confidence


@pytest.mark.parametrize("errors", [1, 2, 5])
def test_min_sample_to_prove_with_errors(errors):
    n = min_sample_to_prove(0.95, 0.95, errors=errors)
    assert exact_lower(n - errors, n, 0.95) >= 0.95
    assert exact_lower(n - 1 - errors, n - 1, 0.95) < 0.95


def test_threshold_falls_monotonically_as_correct_audits_accumulate():
    rng = random.Random(11)
    audits: list[Audit] = []
    previous = None
    for _ in range(40):
        audits += [Audit(rng.uniform(0.5, 1.0), True) for _ in range(10)]
        t = choose_threshold(audits, 0.95, 0.95).threshold
        if previous is not None:
            assert t is not None and t <= previous
        previous = t if t is not None else previous
    assert previous is not None and previous < 0.51


def test_higher_target_never_gives_a_lower_threshold():
    rng = random.Random(3)
    audits = [Audit(c, rng.random() < 0.5 + c / 2) for c in (rng.random() for _ in range(3000))]
    thresholds = [choose_threshold(audits, t, 0.95).threshold for t in (0.8, 0.9, 0.95)]
    finite = [t if t is not None else 2.0 for t in thresholds]
    assert finite == sorted(finite)


def test_ties_are_counted_together():
    audits = [Audit(0.9, True)] * 59 + [Audit(0.8, True)] * 10
    decision = choose_threshold(audits, 0.95, 0.95)
    assert [(t.threshold, t.n) for t in decision.tested] == [(0.9, 59), (0.8, 69)]
    assert decision.threshold == 0.8


def test_bad_inputs_are_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"target_accuracy=1\.0"):
        choose_threshold([], 1.0, 0.95)
    with pytest.raises(ValueError, match="confidence_level"):
        choose_threshold([], 0.95, 0.0)
    with pytest.raises(ValueError, match=r"audits\[1\].confidence=nan"):
        choose_threshold([Audit(0.5, True), Audit(float("nan"), True)], 0.95, 0.95)
    with pytest.raises(ValueError, match="min_audits_above"):
        choose_threshold([], 0.95, 0.95, min_audits_above=0)


def test_drift_when_upper_bound_below_target():
    # 50 of 59: the exact upper bound is about 0.918 < 0.95, so the brake fires.
    recent = [Audit(0.99, True)] * 50 + [Audit(0.99, False)] * 9
    decision = drift_detected(recent, 0.95, 0.95)
    upper = binomtest(50, 59, alternative="less").proportion_ci(0.95, method="exact").high
    assert decision.upper_bound == pytest.approx(upper, rel=1e-12)
    assert decision.drifted and (decision.n, decision.correct) == (59, 50)
    assert "drifted" in decision.reason


def test_no_drift_when_the_shortfall_is_not_significant():
    # 18 of 20 (90%) is below target but not with confidence: upper bound ~0.98.
    recent = [Audit(0.99, True)] * 18 + [Audit(0.99, False)] * 2
    decision = drift_detected(recent, 0.95, 0.95)
    assert not decision.drifted and decision.upper_bound > 0.95
    assert not drift_detected([], 0.95, 0.95).drifted
