"""When a model's confident answers may be accepted without people, and when to stop (issue 10).

Method: fixed-sequence testing of one-sided Clopper-Pearson bounds (Clopper & Pearson 1934;
fixed-sequence procedure: Maurer, Hothorn & Lehmacher 1995, Westfall & Krishen 2001).

Audits are scored items that went to people anyway; each says the model's confidence and
whether the human consensus agreed with its prediction. For a candidate threshold t, the
hypothesis "accuracy among items with confidence >= t is below the target" is rejected when the
one-sided Clopper-Pearson lower bound of the audited accuracy above t reaches the target.
Candidates are the distinct audit confidences, tested from the highest down; testing stops at
the first failure. Because each hypothesis is tested only if all before it were rejected, the
family-wise error stays at `1 - confidence_level` without any multiple-testing correction, so
the chosen threshold (the lowest that passed) carries the stated guarantee.

A candidate is only tested once enough audits lie at or above it that a perfect record could
pass (`min_sample_to_prove`: 59 for 95% accuracy at 95% confidence); candidates above that
point are skipped, not failed, so a single wrong audit among the top few does not close the
sequence before it could have started. A wrong audit among the top `min_audits_above` does fail
the first test, and as audits only accumulate per version, keeps the sequence closed while it
is there: callers who want the rule to tolerate a few confident mistakes pass a larger
`min_audits_above`, fixed in advance (e.g. `min_sample_to_prove(target, level, errors=2)`).

The brake (`drift_detected`) is the mirror image: a version's recent audits show accuracy
below target with confidence when the one-sided Clopper-Pearson upper bound is below it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from labelops.quality.intervals import clopper_pearson_lower, clopper_pearson_upper


@dataclass(frozen=True)
class Audit:
    """One audited item: the model's confidence and whether people agreed with the model."""

    confidence: float
    correct: bool


@dataclass(frozen=True)
class ThresholdTest:
    """One step of the sequence: audits at confidence >= threshold and their lower bound."""

    threshold: float
    n: int
    correct: int
    lower_bound: float
    passed: bool


@dataclass(frozen=True)
class ThresholdDecision:
    """The lowest proven threshold (None until proven), every test made, and why."""

    threshold: float | None
    tested: list[ThresholdTest]
    reason: str


@dataclass(frozen=True)
class DriftDecision:
    """Whether recent audits show accuracy below target with confidence (the brake)."""

    drifted: bool
    n: int
    correct: int
    upper_bound: float
    reason: str


def _check_unit_open(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0.0 < value < 1.0):
        raise ValueError(f"{name}={value!r}: must be in (0, 1)")


def min_sample_to_prove(target_accuracy: float, confidence_level: float, errors: int = 0) -> int:
    """Smallest n whose record with `errors` wrong (n - errors correct of n) has a one-sided
    Clopper-Pearson lower bound >= target_accuracy.

    With no errors it is the smallest n with (1 - level) ** (1 / n) >= target, i.e.
    ceil(ln(1 - level) / ln(target)): 59 for 0.95 at 0.95, 299 for 0.99 at 0.95. With one
    error, 93 for 0.95 at 0.95; with two, 124.
    """
    _check_unit_open("target_accuracy", target_accuracy)
    _check_unit_open("confidence_level", confidence_level)
    if isinstance(errors, bool) or not isinstance(errors, int) or errors < 0:
        raise ValueError(f"errors={errors!r}: must be an integer >= 0")

    def proves(n: int) -> bool:
        return clopper_pearson_lower(n - errors, n, confidence_level) >= target_accuracy

    # The perfect-record closed form bounds n from below (less float rounding); at a fixed
    # number of errors the bound grows with n, so double up to a passing n, then bisect.
    closed = math.ceil(math.log(1.0 - confidence_level) / math.log(target_accuracy))
    low = errors + max(1, closed - 1)
    if proves(low):
        while low > errors + 1 and proves(low - 1):
            low -= 1
        return low
    high = 2 * low
    while not proves(high):
        low, high = high, 2 * high
    while high - low > 1:  # proves(high) and not proves(low)
        mid = (low + high) // 2
        low, high = (low, mid) if proves(mid) else (mid, high)
    return high


def _check_audits(audits: Sequence[Audit]) -> None:
    for i, audit in enumerate(audits):
        c = audit.confidence
        if not (isinstance(c, int | float) and 0.0 <= c <= 1.0):  # also refuses NaN
            raise ValueError(f"audits[{i}].confidence={c!r}: must be in [0, 1]")


def choose_threshold(
    audits: Sequence[Audit],
    target_accuracy: float,
    confidence_level: float,
    min_audits_above: int | None = None,
    candidate_thresholds: Iterable[float] | None = None,
) -> ThresholdDecision:
    """The lowest confidence threshold proven by fixed-sequence Clopper-Pearson testing.

    `min_audits_above` defaults to `min_sample_to_prove(target_accuracy, confidence_level)`;
    `candidate_thresholds` defaults to the distinct audit confidences. Candidates are tested
    in descending order, skipping those with fewer than `min_audits_above` audits at or above
    them, and testing stops at the first whose lower bound is below the target.
    """
    _check_unit_open("target_accuracy", target_accuracy)
    _check_unit_open("confidence_level", confidence_level)
    _check_audits(audits)
    needed = (
        min_sample_to_prove(target_accuracy, confidence_level)
        if min_audits_above is None
        else min_audits_above
    )
    if isinstance(needed, bool) or not isinstance(needed, int) or needed < 1:
        raise ValueError(f"min_audits_above={min_audits_above!r}: must be an integer >= 1")
    # Imported here: numpy and scipy.stats are most of a process's memory (~90 MiB), and the
    # operator, which imports this module only for its types, never chooses a threshold.
    import numpy as np
    from scipy.stats import beta

    conf = np.array([a.confidence for a in audits], dtype=float)
    ok = np.array([bool(a.correct) for a in audits], dtype=bool)
    if candidate_thresholds is None:
        candidates = np.unique(conf)[::-1]
    else:
        cands = [float(t) for t in candidate_thresholds]
        for i, t in enumerate(cands):
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"candidate_thresholds[{i}]={t!r}: must be in [0, 1]")
        candidates = np.unique(np.array(cands, dtype=float))[::-1]

    # Counts at or above each candidate, from the audits sorted by confidence.
    order = np.argsort(conf, kind="stable")
    sorted_conf = conf[order]
    correct_suffix = np.concatenate([np.cumsum(ok[order][::-1])[::-1], [0]])
    start = np.searchsorted(sorted_conf, candidates, side="left")
    n_above = len(conf) - start
    k_above = correct_suffix[start]

    testable = n_above >= needed
    cand_t, cand_n, cand_k = candidates[testable], n_above[testable], k_above[testable]
    if cand_t.size == 0:
        return ThresholdDecision(
            None,
            [],
            f"no threshold: {len(conf)} audits, {needed} needed above a threshold before "
            f"{target_accuracy:g} accuracy can be proven at {confidence_level:g} confidence",
        )
    # Vectorised one-sided lower bounds (k == 0 gives 0, as in clopper_pearson_lower).
    with np.errstate(invalid="ignore"):
        lower = np.where(
            cand_k > 0,
            beta.ppf(1.0 - confidence_level, np.maximum(cand_k, 1), cand_n - cand_k + 1),
            0.0,
        )
    passed = lower >= target_accuracy
    failures = np.flatnonzero(~passed)
    stop = int(failures[0]) if failures.size else len(cand_t) - 1
    tested = [
        ThresholdTest(
            float(cand_t[i]), int(cand_n[i]), int(cand_k[i]), float(lower[i]), bool(passed[i])
        )
        for i in range(stop + 1)
    ]
    winners = [t for t in tested if t.passed]
    if not winners:
        first = tested[0]
        return ThresholdDecision(
            None,
            tested,
            f"no threshold: at the highest testable threshold {first.threshold:g}, "
            f"{first.correct} of {first.n} audits correct, lower bound {first.lower_bound:.4f} "
            f"< {target_accuracy:g} at {confidence_level:g} confidence",
        )
    best = winners[-1]
    tail = ""
    if not tested[-1].passed:
        fail = tested[-1]
        tail = (
            f"; the next candidate {fail.threshold:g} failed ({fail.correct} of {fail.n}, "
            f"lower bound {fail.lower_bound:.4f}), so testing stopped"
        )
    return ThresholdDecision(
        best.threshold,
        tested,
        f"threshold {best.threshold:g}: {best.correct} of {best.n} audits at confidence >= "
        f"{best.threshold:g} correct, lower bound {best.lower_bound:.4f} >= {target_accuracy:g} "
        f"at {confidence_level:g} confidence{tail}",
    )


def drift_detected(
    recent_audits: Sequence[Audit], target_accuracy: float, confidence_level: float
) -> DriftDecision:
    """The brake: recent audited accuracy is below target with confidence.

    Drifted when the one-sided Clopper-Pearson upper bound of the accuracy of `recent_audits`
    (the rolling window the caller keeps for one model version) is below `target_accuracy`.
    An empty window never drifts.
    """
    _check_unit_open("target_accuracy", target_accuracy)
    _check_unit_open("confidence_level", confidence_level)
    _check_audits(recent_audits)
    n = len(recent_audits)
    k = sum(1 for a in recent_audits if a.correct)
    upper = clopper_pearson_upper(k, n, confidence_level)
    drifted = n > 0 and upper < target_accuracy
    relation = "<" if drifted else ">="
    verdict = "drifted" if drifted else "no drift"
    return DriftDecision(
        drifted,
        n,
        k,
        upper,
        f"{verdict}: {k} of {n} recent audits correct, upper bound {upper:.4f} {relation} "
        f"{target_accuracy:g} at {confidence_level:g} confidence",
    )
