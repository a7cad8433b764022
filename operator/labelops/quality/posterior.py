"""Labeler accuracy, the one-coin posterior of an item's answer, and adaptive overlap (issue 11).

Model: the one-coin model of Dawid & Skene (1979) as used for online truth inference (e.g.
Karger, Oh & Shah 2011; Welinder & Perona 2010): labeler j answers the true class with
probability a_j and otherwise one of the other K - 1 classes uniformly; answers are
independent given the true class; the prior over the K classes is flat. Then

    P(true = c | answers) ∝ prod_j [a_j if v_j == c else (1 - a_j) / (K - 1)]
                         ∝ exp(sum_{j: v_j == c} w_j),   w_j = log(a_j (K - 1) / (1 - a_j)),

so the posterior is a softmax over the per-value sums of vote weights, every value nobody
gave scoring 0. That second form is what SQL can keep per item (a running sum per value).

Accuracy estimate: the posterior mean of a Beta prior updated with the labeler's gold answers
and their agreement with consensus on completed items, clamped to [1/K, 0.99]: below 1/K a
labeler is no better than chance (weight 0, never negative), and no one is trusted as if
infallible (a weight of at most log(99 (K - 1))).

Stopping rule (adaptive overlap): an item is complete once it has at least `min_labels` and
its leading value's posterior reaches `agreement`; at `max_labels` without that it completes
as disputed. Until then it may need up to `max_labels - k` more labels, which bounds the leases
the store may hand out for it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from labelops.quality.values import order_key

MAX_ACCURACY = 0.99
V = TypeVar("V", bound=Hashable)  # a label value
_UNSEEN = object()  # stands for any class nobody answered


def _check_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r}: must be an integer >= 2")


def labeler_accuracy(
    gold_correct: int,
    gold_total: int,
    agree: float,
    agree_total: float,
    prior_correct: float = 2,
    prior_total: float = 3,
    num_classes: int = 2,
    agreement_weight: float = 1.0,
) -> float:
    """Beta-smoothed accuracy of a labeler, clamped to [1/K, 0.99].

    (prior_correct + gold_correct + w * agree) / (prior_total + gold_total + w * agree_total),
    the posterior mean under a Beta(prior_correct, prior_total - prior_correct) prior (2/3
    with no evidence), where agreement with consensus counts with weight w (default 1).
    """
    _check_classes(num_classes)
    for name, part, whole in (
        ("gold_correct", gold_correct, gold_total),
        ("agree", agree, agree_total),
    ):
        if not 0 <= part <= whole:
            raise ValueError(f"{name}={part!r}: must be in [0, {whole!r}] and the total >= 0")
    if not 0 < prior_correct < prior_total:
        raise ValueError(
            f"prior_correct={prior_correct!r}, prior_total={prior_total!r}: "
            "must satisfy 0 < prior_correct < prior_total"
        )
    if not agreement_weight >= 0:
        raise ValueError(f"agreement_weight={agreement_weight!r}: must be >= 0")
    estimate = (prior_correct + gold_correct + agreement_weight * agree) / (
        prior_total + gold_total + agreement_weight * agree_total
    )
    return min(MAX_ACCURACY, max(1.0 / num_classes, estimate))


def vote_weight(accuracy: float, num_classes: int) -> float:
    """The log-likelihood-ratio weight of one vote: log(a (K - 1) / (1 - a))."""
    _check_classes(num_classes)
    if not 0.0 < accuracy < 1.0:
        raise ValueError(f"accuracy={accuracy!r}: must be in (0, 1)")
    return math.log(accuracy * (num_classes - 1) / (1.0 - accuracy))


def posterior_from_weights(weight_sums: Mapping[V, float], num_classes: int) -> dict[V, float]:
    """Softmax over per-value weight sums, the K - len(weight_sums) unseen values scoring 0.

    Returns the posterior of each seen value; the rest of the mass (1 - sum) is spread evenly
    over the values nobody gave.
    """
    _check_classes(num_classes)
    if len(weight_sums) > num_classes:
        raise ValueError(f"{len(weight_sums)} distinct values: more than num_classes={num_classes}")
    unseen = num_classes - len(weight_sums)
    if not weight_sums:
        return {}
    top = max(0.0, *weight_sums.values()) if unseen else max(weight_sums.values())
    exps = {v: math.exp(s - top) for v, s in weight_sums.items()}
    total = sum(exps.values()) + unseen * math.exp(-top)
    return {v: e / total for v, e in exps.items()}


def posterior(answers: Sequence[tuple[V, float]], num_classes: int) -> dict[V, float]:
    """One-coin posterior of each given value from (value, labeler accuracy) pairs.

    Computed from the likelihood product directly (in logs); `posterior_from_weights` of the
    summed `vote_weight`s gives the same numbers.
    """
    _check_classes(num_classes)
    values = {v for v, _ in answers}
    if len(values) > num_classes:
        raise ValueError(f"{len(values)} distinct values: more than num_classes={num_classes}")
    for i, (_, a) in enumerate(answers):
        if not 0.0 < a < 1.0:
            raise ValueError(f"answers[{i}] accuracy={a!r}: must be in (0, 1)")
    if not answers:
        return {}
    k = num_classes

    def log_likelihood(true_value: object) -> float:
        return sum(
            math.log(a) if v == true_value else math.log((1 - a) / (k - 1)) for v, a in answers
        )

    logs = {v: log_likelihood(v) for v in values}
    unseen = k - len(values)
    unseen_log = log_likelihood(_UNSEEN) if unseen else -math.inf  # no answer matches it
    top = max(*logs.values(), unseen_log)
    total = sum(math.exp(x - top) for x in logs.values()) + unseen * math.exp(unseen_log - top)
    return {v: math.exp(x - top) / total for v, x in logs.items()}


def leading(
    distribution: Mapping[V, float], votes: Mapping[V, int] | None = None
) -> tuple[V | None, float]:
    """The value with the highest posterior; ties go to the value with more votes (when
    `votes` is given), then to the first in the fixed order of values (`values.order_key`)."""
    if not distribution:
        return None, 0.0
    counts: Mapping[V, int] = votes or {}
    value = min(distribution, key=lambda v: (-distribution[v], -counts.get(v, 0), order_key(v)))
    return value, distribution[value]


def agreement_credit(
    answers: Sequence[tuple[Hashable, float]], index: int, num_classes: int
) -> float:
    """Soft agreement of one answer with the consensus of the others: the one-coin posterior
    that `answers[index]`'s value is the true one given every *other* answer.

    Summed over completed items it is the expected number of correct answers (the E-step of
    Dawid-Skene's EM for one coin): unlike counting agreement with a consensus that includes the
    answer itself, it does not reward a labeler for agreeing with their own vote, and a vote
    against a weak consensus costs less than one against a strong one. With no other answer
    it is 1/K (no evidence).
    """
    _check_classes(num_classes)
    if not 0 <= index < len(answers):
        raise ValueError(f"index={index!r}: must be in [0, {len(answers)})")
    value = answers[index][0]
    others = [a for i, a in enumerate(answers) if i != index]
    dist = posterior(others, num_classes)
    if value in dist:
        return dist[value]
    unseen = num_classes - len(dist)
    return (1.0 - sum(dist.values())) / unseen if unseen else 0.0


@dataclass(frozen=True)
class OverlapDecision:
    """Where an item stands under adaptive overlap.

    `complete`: no more labels (agreement reached with at least `min_labels`, or `max_labels`
    reached); `disputed`: completed at `max_labels` without agreement; `leading_value` and
    `posterior`: the leading value and its posterior; `labels_needed_at_most`: how many more
    labels the rule may still ask for (0 when complete), the most leases worth granting;
    `distribution`: every seen value with its posterior, most likely first.
    """

    complete: bool
    disputed: bool
    leading_value: Hashable | None
    posterior: float
    labels_needed_at_most: int
    distribution: tuple[tuple[Hashable, float], ...] = ()


def check_overlap(min_labels: int, max_labels: int, agreement: float) -> None:
    """Refuse an overlap rule that cannot work, naming the field and what is allowed."""
    if isinstance(min_labels, bool) or not isinstance(min_labels, int) or min_labels < 1:
        raise ValueError(f"min_labels={min_labels!r}: must be an integer >= 1")
    if isinstance(max_labels, bool) or not isinstance(max_labels, int) or max_labels < min_labels:
        raise ValueError(
            f"max_labels={max_labels!r}: must be an integer >= min_labels={min_labels}"
        )
    if not 0.5 < agreement < 1.0:
        raise ValueError(f"agreement={agreement!r}: must be in (0.5, 1)")


def stopping_decision(
    answers: Sequence[tuple[Hashable, float]],
    num_classes: int,
    min_labels: int,
    max_labels: int,
    agreement: float,
) -> OverlapDecision:
    """Adaptive overlap: complete at `agreement` with >= `min_labels`, disputed at `max_labels`."""
    check_overlap(min_labels, max_labels, agreement)
    dist = posterior(answers, num_classes)
    votes: dict[Hashable, int] = {}
    for v, _ in answers:
        votes[v] = votes.get(v, 0) + 1
    value, p = leading(dist, votes)
    k = len(answers)
    agreed = k >= min_labels and p >= agreement
    at_max = k >= max_labels
    complete = agreed or at_max
    ordered = tuple(
        sorted(dist.items(), key=lambda kv: (-kv[1], -votes.get(kv[0], 0), order_key(kv[0])))
    )
    return OverlapDecision(
        complete=complete,
        disputed=complete and not agreed,
        leading_value=value,
        posterior=p,
        labels_needed_at_most=0 if complete else max_labels - k,
        distribution=ordered,
    )
