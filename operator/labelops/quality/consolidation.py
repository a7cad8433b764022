"""One value per item from many labels, with a confidence (issue 11).

Methods:
- `majority`: the most frequent value; confidence = its share of the item's labels; ties go
  to the first value in a fixed order of values (`values.order_key`), so every run agrees.
- `weighted`: the one-coin posterior of `posterior` (Dawid & Skene's model with one accuracy
  per labeler, flat prior): the online method the store applies label by label; confidence =
  the leading value's posterior. Labelers without an estimate get the prior accuracy (2/3).
- `dawid-skene`: Dawid & Skene (1979), EM over the whole campaign with a full confusion matrix
  per labeler, by crowd-kit (`DawidSkene(n_iter=100)`); confidence = its posterior probability.
  Gold answers, when given, are passed as known true labels.
- `glad` (Whitehill et al. 2009) and `mace` (Hovy et al. 2013), also by crowd-kit. MACE in
  crowd-kit 1.4.2 takes about a minute on first use in a process whatever the data size (seen
  on this 2-core machine), and on D_Product it scored well below its published figure (see
  bench/bench_consolidation.py): prefer `dawid-skene`.

The batch methods import crowd-kit lazily: it is the `consolidation` extra of the export path
(it pulls in heavy dependencies), so the operator and worker never load it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from labelops.quality.posterior import labeler_accuracy, leading, posterior
from labelops.quality.values import order_key

Method = Literal["majority", "weighted", "dawid-skene", "glad", "mace"]
METHODS: tuple[str, ...] = ("majority", "weighted", "dawid-skene", "glad", "mace")
_TIE = 1e-12
I = TypeVar("I", bound=Hashable)  # an item id  # noqa: E741


class ConsolidationUnavailable(RuntimeError):
    """A batch method was asked for but crowd-kit is not installed."""


@dataclass(frozen=True)
class Consolidated:
    """An item's consolidated value, how sure the method is, and what it rests on.

    `labels`: how many labels the item had; `agreement`: the share of them equal to `value`;
    `disputed`: the top two values were tied, or confidence fell below `disputed_below`.
    """

    value: Hashable
    confidence: float
    labels: int
    agreement: float
    disputed: bool


def _group(
    labels: Iterable[tuple[I, Hashable, Hashable]],
) -> dict[I, list[tuple[Hashable, Hashable]]]:
    per_item: dict[I, list[tuple[Hashable, Hashable]]] = {}
    for item, labeler, value in labels:
        per_item.setdefault(item, []).append((labeler, value))
    return per_item


def _result(
    value: Hashable,
    confidence: float,
    runner_up: float,
    answers: list[tuple[Hashable, Hashable]],
    disputed_below: float | None,
) -> Consolidated:
    agree = sum(1 for _, v in answers if v == value) / len(answers)
    tied = runner_up >= confidence - _TIE
    low = disputed_below is not None and confidence < disputed_below
    return Consolidated(value, float(confidence), len(answers), agree, tied or low)


def _majority(
    per_item: Mapping[I, list[tuple[Hashable, Hashable]]], disputed_below: float | None
) -> dict[I, Consolidated]:
    out = {}
    for item, answers in per_item.items():
        counts = Counter(v for _, v in answers)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], order_key(kv[0])))
        value, top = ranked[0]
        second = ranked[1][1] if len(ranked) > 1 else 0
        n = len(answers)
        out[item] = _result(value, top / n, second / n, answers, disputed_below)
    return out


def _weighted(
    per_item: Mapping[I, list[tuple[Hashable, Hashable]]],
    accuracy: Mapping[Any, float],
    num_classes: int,
    disputed_below: float | None,
) -> dict[I, Consolidated]:
    prior = labeler_accuracy(0, 0, 0, 0, num_classes=num_classes)
    out = {}
    for item, answers in per_item.items():
        dist = posterior([(v, accuracy.get(j, prior)) for j, v in answers], num_classes)
        value, p = leading(dist)
        others = [q for v, q in dist.items() if v != value]
        unseen = num_classes - len(dist)
        if unseen:
            others.append((1.0 - sum(dist.values())) / unseen)
        out[item] = _result(value, p, max(others, default=0.0), answers, disputed_below)
    return out


def _crowdkit(
    per_item: Mapping[I, list[tuple[Hashable, Hashable]]],
    method: str,
    gold: Mapping[Any, Any] | None,
    disputed_below: float | None,
) -> dict[I, Consolidated]:
    try:
        import pandas as pd
        from crowdkit.aggregation import GLAD, MACE, DawidSkene
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConsolidationUnavailable(
            f"method={method!r} needs crowd-kit, the consolidation extra: "
            "pip install labelops[consolidation]"
        ) from exc
    # Integer codes for items, labelers and values (in the fixed value order, so crowd-kit's
    # first-column tie-break is ours too); mapped back at the end.
    items = list(per_item)
    values = sorted({v for answers in per_item.values() for _, v in answers}, key=order_key)
    code = {v: i for i, v in enumerate(values)}
    labelers: dict[Hashable, int] = {}
    rows = [
        (i, labelers.setdefault(j, len(labelers)), code[v])
        for i, item in enumerate(items)
        for j, v in per_item[item]
    ]
    data = pd.DataFrame(rows, columns=["task", "worker", "label"])
    model: Any
    if method == "dawid-skene":
        model = DawidSkene(n_iter=100)
        index = {item: i for i, item in enumerate(items)}
        known = {index[it]: code[v] for it, v in (gold or {}).items() if it in index and v in code}
        true_labels = pd.Series(known, dtype="int64") if known else None
        model.fit(data, true_labels=true_labels)
    elif method == "glad":
        model = GLAD(n_iter=100)
        model.fit(data)
    else:
        model = MACE(random_state=0)
        model.fit(data)
    probas = model.probas_.reindex(columns=range(len(values)), fill_value=0.0)
    out = {}
    for i, item in enumerate(items):
        row = probas.loc[i].to_numpy(dtype=float)
        best = int(row.argmax())  # first maximum: the lowest value in our order
        runner = float(max((p for c, p in enumerate(row) if c != best), default=0.0))
        out[item] = _result(values[best], row[best], runner, per_item[item], disputed_below)
    return out


def consolidate(
    labels: Iterable[tuple[I, Hashable, Hashable]],
    method: Method = "majority",
    labeler_accuracy: Mapping[Any, float] | None = None,
    num_classes: int | None = None,
    gold: Mapping[Any, Any] | None = None,
    disputed_below: float | None = None,
) -> dict[I, Consolidated]:
    """Consolidate (item, labeler, value) labels into one value per item.

    `labeler_accuracy` (labeler -> accuracy in (0, 1)) is used by `weighted`; `num_classes`
    is the number of possible values (default: the distinct values seen, at least 2);
    `gold` (item -> true value) is given to `dawid-skene` as known labels; `disputed_below`
    flags items whose confidence is below it.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}: must be one of {', '.join(METHODS)}")
    if disputed_below is not None and not 0.0 < disputed_below <= 1.0:
        raise ValueError(f"disputed_below={disputed_below!r}: must be in (0, 1]")
    per_item = _group(labels)
    if not per_item:
        return {}
    distinct = {v for answers in per_item.values() for _, v in answers}
    if num_classes is None:
        num_classes = max(2, len(distinct))
    elif num_classes < len(distinct):
        raise ValueError(
            f"num_classes={num_classes!r}: fewer than the {len(distinct)} distinct values seen"
        )
    if method == "majority":
        return _majority(per_item, disputed_below)
    if method == "weighted":
        return _weighted(per_item, labeler_accuracy or {}, num_classes, disputed_below)
    return _crowdkit(per_item, method, gold, disputed_below)
