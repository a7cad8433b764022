"""The verdict on a labeler from their gold (honeypot) answers (issue 11).

Method: the Wilson score interval (see `intervals`) of the labeler's gold accuracy. A labeler is
blocked only when the evidence says they are below the bar: at least `min_answers` gold answers
and the interval's upper bound below `min_accuracy`. Using the upper bound gives the labeler the
benefit of the doubt: a careful labeler with a few unlucky misses is not blocked, a random
clicker on a binary task (accuracy near 0.5) is, after a handful of answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from labelops.quality.intervals import Interval, wilson


@dataclass(frozen=True)
class GoldVerdict:
    """Whether to block, the figures it rests on, and a sentence naming the rule."""

    blocked: bool
    correct: int
    total: int
    interval: Interval
    reason: str


def gold_verdict(
    correct: int,
    total: int,
    min_answers: int,
    min_accuracy: float,
    confidence: float = 0.95,
) -> GoldVerdict:
    """Block when total >= min_answers and the two-sided Wilson upper bound at `confidence`
    of correct/total is below `min_accuracy`."""
    if isinstance(min_answers, bool) or not isinstance(min_answers, int) or min_answers < 1:
        raise ValueError(f"min_answers={min_answers!r}: must be an integer >= 1")
    if not 0.0 < min_accuracy <= 1.0:
        raise ValueError(f"min_accuracy={min_accuracy!r}: must be in (0, 1]")
    interval = wilson(correct, total, confidence)
    if total < min_answers:
        return GoldVerdict(
            False,
            correct,
            total,
            interval,
            f"no verdict yet: {total} gold answers, {min_answers} needed (gold.minAnswers)",
        )
    blocked = interval.high < min_accuracy
    relation = "<" if blocked else ">="
    return GoldVerdict(
        blocked,
        correct,
        total,
        interval,
        f"{'blocked' if blocked else 'ok'}: {correct} of {total} gold answers correct, Wilson "
        f"{confidence:g} upper bound {interval.high:.3f} {relation} gold.minAccuracy "
        f"{min_accuracy:g}",
    )
