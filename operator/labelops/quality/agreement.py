"""Inter-labeler agreement: Krippendorff's alpha, nominal and ordinal (issue 11).

Method: Krippendorff's alpha (Krippendorff, "Content Analysis", 2004; "Computing Krippendorff's
Alpha-Reliability", 2011), alpha = 1 - D_observed / D_expected, which handles any number of
labelers, missing labels (each item labeled by a few of many labelers) and, for ratings, the
ordinal metric. Only items with at least two labels are pairable and count.

Library: the `krippendorff` package (0.9.0, numpy only). Chosen over crowd-kit's
`alpha_krippendorff` because that one is built on nltk's AnnotationTask with a distance
function, which has no ordinal metric (Krippendorff's ordinal distance depends on the value
marginals, not on the two values alone), needs one row per (item, labeler) answer in pandas,
and sits in the heavy `consolidation` extra, while status computes alpha in the operator image.
We feed it the value-counts form (items x values), so memory grows with items x distinct
values, not items x labelers.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import krippendorff
import numpy as np

from labelops.quality.values import order_key

Level = Literal["nominal", "ordinal"]


@dataclass(frozen=True)
class Agreement:
    """Alpha (None when it is undefined: fewer than two pairable labels, or a single value
    across all of them), the level of measurement, and what it was computed over."""

    alpha: float | None
    level: str
    items: int
    labels: int
    values: int


def krippendorff_alpha(
    labels: Iterable[tuple[Hashable, Hashable, Hashable]],
    level: Level = "nominal",
    value_order: Sequence[Hashable] | None = None,
) -> Agreement:
    """Krippendorff's alpha over (item, labeler, value) triples.

    For `ordinal`, values are ranked by `value_order` when given (every value must be in it),
    else by their natural order (numbers ascending). One labeler may label an item once; a
    repeated (item, labeler) pair is refused.
    """
    if level not in ("nominal", "ordinal"):
        raise ValueError(f"level={level!r}: must be 'nominal' or 'ordinal'")
    seen: set[tuple[Hashable, Hashable]] = set()
    per_item: dict[Hashable, list[Hashable]] = {}
    for item, labeler, value in labels:
        if (item, labeler) in seen:
            raise ValueError(f"labeler {labeler!r} labeled item {item!r} twice: one label each")
        seen.add((item, labeler))
        per_item.setdefault(item, []).append(value)
    pairable = {item: vs for item, vs in per_item.items() if len(vs) >= 2}
    distinct = {v for vs in pairable.values() for v in vs}
    if value_order is not None:
        order = list(value_order)
        missing = distinct - set(order)
        if missing:
            raise ValueError(f"value_order={order!r}: lacks {sorted(missing, key=order_key)!r}")
    else:
        order = sorted(distinct, key=order_key)
    code = {v: i for i, v in enumerate(order)}
    n_labels = sum(len(vs) for vs in pairable.values())
    if n_labels < 2 or len(distinct) < 2:
        # alpha is 0/0 here; agreement is perfect but uninformative, so report none.
        return Agreement(None, level, len(pairable), n_labels, len(distinct))
    counts = np.zeros((len(pairable), len(order)), dtype=np.int64)
    for row, vs in enumerate(pairable.values()):
        for v in vs:
            counts[row, code[v]] += 1
    alpha = krippendorff.alpha(
        value_counts=counts,
        value_domain=list(range(len(order))),
        level_of_measurement=level,
    )
    return Agreement(float(alpha), level, len(pairable), n_labels, len(distinct))
