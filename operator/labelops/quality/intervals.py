"""Confidence intervals of a binomial proportion: Wilson score and Clopper-Pearson (exact).

Why two methods: Wilson's score interval (Wilson 1927) is the recommended everyday interval
(Newcombe 1998, Brown, Cai & DasGupta 2001): close to nominal coverage, never outside [0, 1],
sensible at 0 and n successes. It grades labelers on their gold answers, where a slightly
liberal interval is acceptable. Clopper-Pearson (1934) inverts the binomial test exactly and
never covers less than its nominal level; the auto-accept threshold uses its one-sided lower
bound because a machine label accepted without people needs a guarantee, not an approximation.

Both come from scipy (`binomtest(...).proportion_ci` and the beta quantiles it is built on);
this module only fixes the conventions: `n == 0` gives the uninformative [0, 1], and every
rejection names the argument, its value and what is allowed. scipy.stats is imported on
first use: it is ~70 MiB of a process's memory, and the operator, which imports this module,
needs it only for campaigns with a model or gold items.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """A confidence interval `[low, high]` around the point estimate `successes / n`.

    With `n == 0` the interval is `[0, 1]` and the point estimate is 0.0 (there is none; 0.0
    keeps the value a plain float for JSON and status).
    """

    low: float
    high: float
    point: float


def _check(successes: int, n: int, confidence: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n={n!r}: must be an integer >= 0")
    if isinstance(successes, bool) or not isinstance(successes, int) or not 0 <= successes <= n:
        raise ValueError(f"successes={successes!r}: must be an integer in [0, n={n}]")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r}: must be in (0, 1)")


def wilson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Two-sided Wilson score interval (without continuity correction) at `confidence`.

    `wilson(k, n, 0.90).high` is also the one-sided 95% upper bound.
    """
    _check(successes, n, confidence)
    if n == 0:
        return Interval(0.0, 1.0, 0.0)
    from scipy.stats import binomtest

    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(float(max(0.0, ci.low)), float(min(1.0, ci.high)), successes / n)


def clopper_pearson_lower(successes: int, n: int, confidence: float = 0.95) -> float:
    """One-sided exact (Clopper-Pearson) lower confidence bound of the proportion.

    The largest p such that P(X >= successes | n, p) <= 1 - confidence, i.e. the
    `1 - confidence` quantile of Beta(successes, n - successes + 1); 0 when successes == 0.
    With every trial a success it is `(1 - confidence) ** (1 / n)`: 59/59 at 95% gives 0.9505.
    """
    _check(successes, n, confidence)
    if successes == 0:
        return 0.0
    from scipy.stats import beta

    return float(beta.ppf(1.0 - confidence, successes, n - successes + 1))


def clopper_pearson_upper(successes: int, n: int, confidence: float = 0.95) -> float:
    """One-sided exact (Clopper-Pearson) upper confidence bound of the proportion.

    The `confidence` quantile of Beta(successes + 1, n - successes); 1 when successes == n
    (including n == 0).
    """
    _check(successes, n, confidence)
    if successes == n:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(confidence, successes + 1, n - successes))


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Two-sided exact (Clopper-Pearson) interval: each tail holds `(1 - confidence) / 2`."""
    _check(successes, n, confidence)
    if n == 0:
        return Interval(0.0, 1.0, 0.0)
    one_sided = 1.0 - (1.0 - confidence) / 2.0
    return Interval(
        clopper_pearson_lower(successes, n, one_sided),
        clopper_pearson_upper(successes, n, one_sided),
        successes / n,
    )
