"""Consolidation, version names and the retrain schedule of the built-in learner."""

from __future__ import annotations

import pytest

from labelops.learner.consolidation import lower_median, majority
from labelops.learner.schedule import RetrainPolicy
from labelops.learner.versions import labels_of, version_name


def test_majority_takes_the_most_frequent_and_refuses_a_tie() -> None:
    assert majority(["spam", "ham", "spam"]) == "spam"
    assert majority(["ham"]) == "ham"
    assert majority(["spam", "ham"]) is None
    assert majority(["a", "a", "b", "b", "c"]) is None
    assert majority([]) is None


def test_lower_median_is_a_score_someone_gave() -> None:
    assert lower_median([1, 5, 4]) == 4
    assert lower_median([2, 3]) == 2
    assert lower_median([1, 1, 5]) == 1
    assert lower_median([]) is None


def test_versions_are_zero_padded_so_string_and_number_order_agree() -> None:
    assert version_name(0) == "builtin-000000000"
    assert version_name(1234) == "builtin-000001234"
    assert version_name(99) < version_name(100)
    assert labels_of(version_name(1234)) == 1234
    assert labels_of("my-bert-v3") is None
    with pytest.raises(ValueError, match="labels_trained_on=-1 is out of range"):
        version_name(-1)


POLICY = RetrainPolicy(every_labels=50, every_seconds=60)


def test_the_first_attempt_is_due_at_once() -> None:
    assert POLICY.due(0, None, None)


@pytest.mark.parametrize(
    ("labels_now", "at_last", "seconds", "due"),
    [
        (149, 100, 10, False),  # 49 new labels, 10 s
        (150, 100, 10, True),  # 50 new labels
        (101, 100, 59.9, False),
        (101, 100, 60, True),  # one new label and the timer
        (100, 100, 3600, False),  # the timer alone retrains nothing new
        (90, 100, 3600, False),
    ],
)
def test_retrain_every_k_labels_or_t_seconds_when_labels_changed(
    labels_now: int, at_last: int, seconds: float, due: bool
) -> None:
    assert POLICY.due(labels_now, at_last, seconds) is due
