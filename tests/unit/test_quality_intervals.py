"""Wilson and Clopper-Pearson intervals against published values and scipy's exact test."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest

from labelops.quality.intervals import (
    Interval,
    clopper_pearson,
    clopper_pearson_lower,
    clopper_pearson_upper,
    wilson,
)

# Newcombe, "Two-sided confidence intervals for the single proportion: comparison of seven
# methods", Statistics in Medicine 17 (1998), Table II: method 3 (Wilson score) and
# method 5 (Clopper-Pearson "exact"), 95%, to four decimals.
NEWCOMBE = [
    # k, n, wilson (low, high), exact (low, high)
    (81, 263, (0.2553, 0.3662), (0.2527, 0.3676)),
    (15, 148, (0.0624, 0.1605), (0.0578, 0.1617)),
    (0, 20, (0.0000, 0.1611), (0.0000, 0.1684)),
    (1, 29, (0.0061, 0.1718), (0.0009, 0.1776)),
]


@pytest.mark.parametrize(("k", "n", "wil", "exact"), NEWCOMBE)
def test_against_newcombe_1998(k, n, wil, exact):
    w = wilson(k, n, 0.95)
    assert (round(w.low, 4), round(w.high, 4)) == wil
    assert w.point == k / n
    cp = clopper_pearson(k, n, 0.95)
    assert (round(cp.low, 4), round(cp.high, 4)) == exact


def test_wilson_closed_form():
    # Wilson (1927): (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
    k, n, z = 7, 20, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    w = wilson(k, n)
    assert w.low == pytest.approx(centre - half, abs=1e-12)
    assert w.high == pytest.approx(centre + half, abs=1e-12)


def test_one_sided_perfect_record_closed_form():
    # With n of n, the lower bound solves p^n = alpha.
    assert clopper_pearson_lower(59, 59, 0.95) == pytest.approx(0.05 ** (1 / 59), abs=1e-12)
    assert round(clopper_pearson_lower(59, 59, 0.95), 4) == 0.9505
    assert clopper_pearson_lower(59, 59, 0.95) >= 0.95
    assert clopper_pearson_lower(58, 58, 0.95) < 0.95
    assert clopper_pearson_lower(0, 10, 0.95) == 0.0
    assert clopper_pearson_upper(10, 10, 0.95) == 1.0
    assert clopper_pearson_upper(0, 59, 0.95) == pytest.approx(1 - 0.05 ** (1 / 59), abs=1e-12)


@pytest.mark.parametrize(("k", "n"), [(1, 1), (3, 10), (50, 59), (97, 100), (1000, 1003)])
@pytest.mark.parametrize("conf", [0.9, 0.95, 0.99])
def test_one_sided_bounds_match_scipy_exact(k, n, conf):
    # A one-sided bound at level c is the matching end of scipy's exact one-sided interval.
    lower = binomtest(k, n, alternative="greater").proportion_ci(conf, method="exact").low
    upper = binomtest(k, n, alternative="less").proportion_ci(conf, method="exact").high
    assert clopper_pearson_lower(k, n, conf) == pytest.approx(lower, rel=1e-12, abs=1e-15)
    assert clopper_pearson_upper(k, n, conf) == pytest.approx(upper, rel=1e-12, abs=1e-15)
    two = binomtest(k, n).proportion_ci(conf, method="exact")
    cp = clopper_pearson(k, n, conf)
    assert (cp.low, cp.high) == pytest.approx((two.low, two.high), rel=1e-12, abs=1e-15)


def test_empty_sample_is_uninformative():
    assert wilson(0, 0) == Interval(0.0, 1.0, 0.0)
    assert clopper_pearson(0, 0) == Interval(0.0, 1.0, 0.0)
    assert clopper_pearson_lower(0, 0) == 0.0
    assert clopper_pearson_upper(0, 0) == 1.0


def test_intervals_contain_the_point_and_narrow_with_n():
    widths = []
    for n in (10, 100, 1000):
        w = wilson(n // 2, n)
        assert w.low <= w.point <= w.high
        widths.append(w.high - w.low)
    assert widths == sorted(widths, reverse=True)


@pytest.mark.parametrize(
    ("args", "field"),
    [((5, 4), "successes"), ((-1, 4), "successes"), ((1, -1), "n"), ((1, 2.0), "n")],
)
def test_bad_counts_are_refused_naming_the_argument(args, field):
    with pytest.raises(ValueError, match=field):
        wilson(*args)


@pytest.mark.parametrize("conf", [0.0, 1.0, 1.5, float("nan")])
def test_bad_confidence_is_refused(conf):
    with pytest.raises(ValueError, match="confidence"):
        clopper_pearson_lower(1, 2, conf)
