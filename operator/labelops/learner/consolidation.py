"""One training target per item from its several human labels.

Labels arrive at least once (the outbox relay may publish a label twice), so they are
counted once per labelId. Categorical targets (a choice, a preferred response) take the
majority; a tie says the people disagree, and the item is left out of training rather than
taught one side at random. Ordinal targets (a rating) take the lower median, which a single
outlier cannot move.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Hashable, Sequence


def majority(targets: Sequence[Hashable]) -> Hashable | None:
    """The most frequent target; None when there is none or the top is tied."""
    ranked = Counter(targets).most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def lower_median(scores: Sequence[int]) -> int | None:
    """The lower median of integer scores (a score someone actually gave); None if empty."""
    if not scores:
        return None
    return int(statistics.median_low(scores))
