"""Consolidation on a small fixed dataset whose answers are known."""

from __future__ import annotations

import pytest

from labelops.quality.consolidation import consolidate

# 20 items, truth alternates "cat"/"dog". Two careful labelers are always right; three
# spammers always answer "cat". Majority follows the spammers on every "dog" item; methods
# that learn who is careful (weighted with known accuracies, Dawid-Skene) get all 20 right.
TRUTH = {f"item{i}": ("cat" if i % 2 == 0 else "dog") for i in range(20)}
LABELS = [(item, c, truth) for item, truth in TRUTH.items() for c in ("careful1", "careful2")]
LABELS += [(item, s, "cat") for item in TRUTH for s in ("spam1", "spam2", "spam3")]
ACCURACY = {"careful1": 0.95, "careful2": 0.95, "spam1": 0.5, "spam2": 0.5, "spam3": 0.5}


def correct(result):
    return sum(result[item].value == truth for item, truth in TRUTH.items())


def test_majority_follows_the_spammers():
    result = consolidate(LABELS, "majority")
    assert correct(result) == 10
    dog = result["item1"]
    assert dog.value == "cat" and dog.confidence == pytest.approx(0.6)
    assert (dog.labels, dog.agreement, dog.disputed) == (5, pytest.approx(0.6), False)
    cat = result["item0"]
    assert cat.value == "cat" and cat.confidence == 1.0 and cat.agreement == 1.0


def test_weighted_with_known_accuracies_gets_all_right():
    result = consolidate(LABELS, "weighted", labeler_accuracy=ACCURACY)
    assert correct(result) == 20
    # Spammers at 0.5 weigh nothing: posterior of "dog" = .95^2 / (.95^2 + .05^2).
    assert result["item1"].confidence == pytest.approx(0.95**2 / (0.95**2 + 0.05**2))
    assert result["item1"].agreement == pytest.approx(0.4)


def test_weighted_without_estimates_is_the_prior_weighted_majority():
    result = consolidate(LABELS, "weighted")
    assert correct(result) == 10
    # Five votes of the prior accuracy 2/3: "cat" 3 votes vs "dog" 2 -> odds 2^3 : 2^2.
    assert result["item1"].confidence == pytest.approx(8 / 12)


def test_dawid_skene_learns_who_is_careful():
    result = consolidate(LABELS, "dawid-skene")
    assert correct(result) == 20
    assert all(r.confidence > 0.8 for r in result.values())
    assert result["item0"].confidence == pytest.approx(1.0)


def test_dawid_skene_uses_gold_as_known_labels():
    # With the careful labelers split, the gold items tell Dawid-Skene which of them is right.
    labels = [(i, "good", t) for i, t in TRUTH.items()]
    labels += [(i, "bad", "dog" if t == "cat" else "cat") for i, t in TRUTH.items()]
    labels += [(i, "coin", "cat" if n % 3 else "dog") for n, i in enumerate(TRUTH)]
    gold = {i: TRUTH[i] for i in ("item0", "item1", "item2", "item3")}
    result = consolidate(labels, "dawid-skene", gold=gold)
    assert correct(result) == 20


# MACE is left to the benchmark: crowd-kit compiles it on first use (about a minute here).
@pytest.mark.parametrize("method", ["glad"])
def test_other_batch_methods_on_an_easy_dataset(method):
    # Three careful labelers and one who always answers "cat": every method gets all right.
    labels = [(i, c, t) for i, t in TRUTH.items() for c in ("c1", "c2", "c3")]
    labels += [(i, "spam", "cat") for i in TRUTH]
    result = consolidate(labels, method)
    assert set(result) == set(TRUTH)
    assert correct(result) == 20
    assert all(0.5 < r.confidence <= 1.0 for r in result.values())
    assert result["item1"].agreement == pytest.approx(0.75)


def test_ties_are_deterministic_and_disputed():
    labels = [("x", "a", "dog"), ("x", "b", "cat")]
    for method in ("majority", "weighted", "dawid-skene"):
        forward = consolidate(labels, method)["x"]
        backward = consolidate(labels[::-1], method)["x"]
        assert forward.value == backward.value == "cat"
        assert forward.disputed


def test_disputed_below_and_numeric_values():
    labels = [(1, "a", 2), (1, "b", 2), (1, "c", 10), (2, "a", 10), (2, "b", 10)]
    result = consolidate(labels, "majority", disputed_below=0.7)
    assert result[1].value == 2 and result[1].disputed  # 2/3 < 0.7
    assert result[2].value == 10 and not result[2].disputed


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="method='vote'"):
        consolidate(LABELS, "vote")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes=1"):
        consolidate(LABELS, "weighted", num_classes=1)
    with pytest.raises(ValueError, match="disputed_below=0"):
        consolidate(LABELS, disputed_below=0)
    assert consolidate([], "dawid-skene") == {}
