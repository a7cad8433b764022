"""Labeler accuracy, the one-coin posterior, its log-weight form, and the stopping rule."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from labelops.quality.posterior import (
    agreement_credit,
    labeler_accuracy,
    posterior,
    posterior_from_weights,
    stopping_decision,
    vote_weight,
)


def brute_force(answers, classes):
    """Bayes' rule by enumeration over the true class, flat prior."""
    joint = {}
    k = len(classes)
    for c in classes:
        joint[c] = math.prod(a if v == c else (1 - a) / (k - 1) for v, a in answers)
    total = sum(joint.values())
    return {c: p / total for c, p in joint.items()}


def test_posterior_hand_computed():
    # a: .8 * .7 * (.1/2) = .028; b: .1 * .15 * .9 = .0135; c: .1 * .15 * .05 = .00075
    result = posterior([("a", 0.8), ("a", 0.7), ("b", 0.9)], 3)
    assert result["a"] == pytest.approx(0.028 / 0.04225)
    assert result["b"] == pytest.approx(0.0135 / 0.04225)
    assert "c" not in result  # unseen classes share the remaining mass


@pytest.mark.parametrize("k", [2, 3, 5])
def test_posterior_matches_enumeration_and_the_weight_form(k):
    rng = random.Random(k)
    classes = list(range(k))
    for _ in range(200):
        answers = [
            (rng.choice(classes), rng.uniform(1 / k + 0.01, 0.99)) for _ in range(rng.randint(1, 9))
        ]
        exact = brute_force(answers, classes)
        got = posterior(answers, k)
        sums: dict[int, float] = {}
        for v, a in answers:
            sums[v] = sums.get(v, 0.0) + vote_weight(a, k)
        weighted = posterior_from_weights(sums, k)
        for v in got:
            assert got[v] == pytest.approx(exact[v], rel=1e-9)
            assert weighted[v] == pytest.approx(exact[v], rel=1e-9)
        unseen = [c for c in classes if c not in got]
        for c in unseen:
            assert exact[c] == pytest.approx((1 - sum(got.values())) / len(unseen), rel=1e-9)


def test_posterior_is_stable_with_many_confident_votes():
    result = posterior([("yes", 0.99)] * 500 + [("no", 0.99)] * 499, 2)
    assert result["yes"] == pytest.approx(0.99 / (0.99 + 0.01))


def test_vote_weight_values():
    assert vote_weight(0.5, 2) == 0.0
    assert vote_weight(0.9, 2) == pytest.approx(math.log(9))
    assert vote_weight(1 / 3, 3) == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"accuracy=1\.0"):
        vote_weight(1.0, 2)


def test_labeler_accuracy_beta_smoothing_and_clamps():
    assert labeler_accuracy(0, 0, 0, 0) == pytest.approx(2 / 3)
    assert labeler_accuracy(8, 10, 3, 5) == pytest.approx((2 + 8 + 3) / (3 + 10 + 5))
    assert labeler_accuracy(1000, 1000, 0, 0) == 0.99
    assert labeler_accuracy(0, 50, 0, 0) == 0.5
    assert labeler_accuracy(0, 50, 0, 0, num_classes=4) == 0.25
    assert labeler_accuracy(4, 10, 6, 8, agreement_weight=0.5) == pytest.approx(9 / 17)
    with pytest.raises(ValueError, match="gold_correct=5"):
        labeler_accuracy(5, 4, 0, 0)
    with pytest.raises(ValueError, match="num_classes=1"):
        labeler_accuracy(1, 1, 0, 0, num_classes=1)


def test_two_agreeing_careful_labelers_complete_at_min():
    d = stopping_decision([("A", 0.97), ("A", 0.97)], 2, 2, 7, 0.95)
    assert d.complete and not d.disputed
    assert d.leading_value == "A" and d.posterior >= 0.95
    assert d.labels_needed_at_most == 0


def test_one_label_never_completes_below_min():
    d = stopping_decision([("A", 0.99)], 2, 2, 7, 0.95)
    assert not d.complete and d.posterior == pytest.approx(0.99)
    assert d.labels_needed_at_most == 6


def test_disagreement_continues_then_disputed_at_max():
    answers = [("A", 0.7), ("B", 0.7)]
    d = stopping_decision(answers, 2, 2, 4, 0.95)
    assert not d.complete and d.labels_needed_at_most == 2
    answers += [("A", 0.7), ("B", 0.7)]
    d = stopping_decision(answers, 2, 2, 4, 0.95)
    assert d.complete and d.disputed and d.labels_needed_at_most == 0
    # A tie: the leading value is fixed by the order of values, not by arrival.
    assert d.leading_value == "A"
    assert stopping_decision(answers[::-1], 2, 2, 4, 0.95).leading_value == "A"


def test_agreement_reached_exactly_at_max_is_not_disputed():
    answers = [("A", 2 / 3)] * 5
    d = stopping_decision(answers, 2, 2, 5, 0.95)
    # log-odds 5 * log 2 = 3.47 > logit(.95) = 2.94
    assert d.complete and not d.disputed


def test_labels_needed_never_exceeds_max_minus_k():
    rng = random.Random(5)
    for min_l, max_l in itertools.product([1, 2, 3], [3, 5, 7]):
        answers: list[tuple[int, float]] = []
        for _ in range(max_l):
            d = stopping_decision(answers, 3, min_l, max_l, 0.9)
            assert 0 <= d.labels_needed_at_most <= max_l - len(answers)
            if d.complete:
                break
            answers.append((rng.randrange(3), rng.uniform(0.34, 0.95)))
        assert len(answers) <= max_l


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((0, 5, 0.9), "min_labels"),
        ((3, 2, 0.9), "max_labels"),
        ((2, 5, 0.5), "agreement"),
        ((2, 5, 1.0), "agreement"),
    ],
)
def test_bad_rules_are_refused(args, field):
    with pytest.raises(ValueError, match=field):
        stopping_decision([], 2, *args)


def test_more_values_than_classes_is_refused():
    with pytest.raises(ValueError, match="num_classes=2"):
        posterior([("a", 0.8), ("b", 0.8), ("c", 0.8)], 2)


def test_ties_in_posterior_go_to_more_votes():
    # One vote of weight log(9) against two of weight log(3) each: equal sums.
    d = stopping_decision([("a", 0.9), ("b", 0.75), ("b", 0.75)], 2, 1, 5, 0.99)
    assert d.distribution[0][1] == pytest.approx(d.distribution[1][1])
    assert d.leading_value == "b"


def test_agreement_credit_is_the_leave_one_out_posterior():
    answers = [("a", 0.8), ("a", 0.7), ("b", 0.9)]
    assert agreement_credit(answers, 2, 3) == pytest.approx(
        posterior(answers[:2], 3).get("b", (1 - sum(posterior(answers[:2], 3).values())) / 2)
    )
    # Against a unanimous strong consensus a dissent earns little; agreeing earns much.
    strong = [("a", 0.95), ("a", 0.95), ("b", 0.7)]
    assert agreement_credit(strong, 2, 2) < 0.01
    assert agreement_credit(strong, 0, 2) > 0.6
    assert agreement_credit([("a", 0.9)], 0, 2) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="index=3"):
        agreement_credit(answers, 3, 3)
