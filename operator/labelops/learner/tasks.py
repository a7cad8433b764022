"""What learning means for each task type: model input, target, consolidation, prediction.

- classification (one choice): the text -> the choice; majority of labels.
- pairwise: (response A, response B) -> first | second | tie; majority of labels. Each
  labeled pair also trains in swapped order, and a prediction averages both orders, so the
  model cannot prefer a response for being listed first.
- rating: prompt + text -> the score as an ordinal class (one class per score seen);
  lower median of labels.
Ranking, free text and multiple-choice classification have no built-in model: `refusal`
says why, and the learner exits with that message.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from labelops.api.campaign import Task, TaskType
from labelops.learner.consolidation import lower_median, majority
from labelops.learner.features import PairDifference, text_vectorizer

FIRST, SECOND, TIE = "first", "second", "tie"
# Weak regularization: TF-IDF features are many and small, and the default C=1 leaves
# the probabilities timid (most near the base rate), which wastes the confident region.
REGULARIZATION_C = 10.0


class TaskLearning(Protocol):
    def model_input(self, payload: dict[str, Any]) -> Any: ...

    def target(self, payload: dict[str, Any], value: Any) -> Hashable | None:
        """The training target a label value means for this item; None if it means none."""

    def consolidate(self, targets: Sequence[Hashable]) -> Hashable | None: ...

    def training_rows(
        self, inputs: Sequence[Any], targets: Sequence[Hashable]
    ) -> tuple[list[Any], list[Hashable]]: ...

    def pipeline(self) -> Pipeline: ...

    def probabilities(self, pipeline: Pipeline, inputs: Sequence[Any]) -> np.ndarray:
        """Rows of class probabilities, columns in pipeline.classes_ order."""

    def label_value(self, payload: dict[str, Any], target: Hashable) -> dict[str, Any]: ...


def refusal(task: Task) -> str | None:
    """Why the built-in learner cannot serve this task; None when it can."""
    if task.type is TaskType.CLASSIFICATION and task.multiple:
        return (
            "task.multiple=true: the built-in learner predicts one choice per item, "
            "not several; use a model of your own (publish to the predictions topic)"
        )
    if task.type not in (TaskType.CLASSIFICATION, TaskType.PAIRWISE, TaskType.RATING):
        return (
            f"task.type={task.type.value!r}: the built-in learner supports classification "
            "(one choice), pairwise and rating; use a model of your own"
        )
    return None


def learning_for(task: Task) -> TaskLearning:
    reason = refusal(task)
    if reason is not None:
        raise ValueError(reason)
    if task.type is TaskType.CLASSIFICATION:
        return Classification(list(task.choices or []))
    if task.type is TaskType.PAIRWISE:
        return Pairwise()
    assert task.scale is not None  # the CRD requires scale for rating
    return Rating(task.scale.min, task.scale.max)


def _classifier() -> LogisticRegression:
    return LogisticRegression(C=REGULARIZATION_C, max_iter=2000)


class _Texts:
    def pipeline(self) -> Pipeline:
        return Pipeline([("features", text_vectorizer()), ("classifier", _classifier())])

    def training_rows(
        self, inputs: Sequence[Any], targets: Sequence[Hashable]
    ) -> tuple[list[Any], list[Hashable]]:
        return list(inputs), list(targets)

    def probabilities(self, pipeline: Pipeline, inputs: Sequence[Any]) -> np.ndarray:
        result: np.ndarray = pipeline.predict_proba(list(inputs))
        return result


class Classification(_Texts):
    def __init__(self, choices: list[str]) -> None:
        self.choices = frozenset(choices)

    def model_input(self, payload: dict[str, Any]) -> str:
        return str(payload.get("text", ""))

    def target(self, payload: dict[str, Any], value: Any) -> Hashable | None:
        choice = value.get("choice") if isinstance(value, dict) else None
        return choice if isinstance(choice, str) and choice in self.choices else None

    def consolidate(self, targets: Sequence[Hashable]) -> Hashable | None:
        return majority(targets)

    def label_value(self, payload: dict[str, Any], target: Hashable) -> dict[str, Any]:
        return {"choice": target}


class Rating(_Texts):
    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def model_input(self, payload: dict[str, Any]) -> str:
        prompt = payload.get("prompt")
        text = str(payload.get("text", ""))
        return f"{prompt}\n{text}" if prompt else text

    def target(self, payload: dict[str, Any], value: Any) -> Hashable | None:
        score = value.get("score") if isinstance(value, dict) else None
        if isinstance(score, bool) or not isinstance(score, int):
            return None
        return score if self.low <= score <= self.high else None

    def consolidate(self, targets: Sequence[Hashable]) -> Hashable | None:
        return lower_median([int(t) for t in targets])  # type: ignore[call-overload]

    def label_value(self, payload: dict[str, Any], target: Hashable) -> dict[str, Any]:
        return {"score": int(target)}  # type: ignore[call-overload]


class Pairwise:
    _SWAPPED = {FIRST: SECOND, SECOND: FIRST, TIE: TIE}

    def model_input(self, payload: dict[str, Any]) -> tuple[str, str]:
        first, second = payload["responses"][:2]
        return str(first.get("text", "")), str(second.get("text", ""))

    def target(self, payload: dict[str, Any], value: Any) -> Hashable | None:
        preferred = value.get("preferred") if isinstance(value, dict) else None
        if preferred == TIE:
            return TIE
        ids = [response.get("id") for response in payload["responses"][:2]]
        if preferred == ids[0]:
            return FIRST
        if preferred == ids[1]:
            return SECOND
        return None

    def consolidate(self, targets: Sequence[Hashable]) -> Hashable | None:
        return majority(targets)

    def training_rows(
        self, inputs: Sequence[Any], targets: Sequence[Hashable]
    ) -> tuple[list[Any], list[Hashable]]:
        swapped = [(b, a) for a, b in inputs]
        return [*inputs, *swapped], [*targets, *(self._SWAPPED[str(t)] for t in targets)]

    def pipeline(self) -> Pipeline:
        # No intercept: with swapped copies in training there is no side to prefer.
        return Pipeline(
            [
                ("features", PairDifference()),
                (
                    "classifier",
                    LogisticRegression(C=REGULARIZATION_C, max_iter=2000, fit_intercept=False),
                ),
            ]
        )

    def probabilities(self, pipeline: Pipeline, inputs: Sequence[Any]) -> np.ndarray:
        pairs = list(inputs)
        direct = pipeline.predict_proba(pairs)
        reverse = pipeline.predict_proba([(b, a) for a, b in pairs])
        classes = [str(c) for c in pipeline.classes_]
        # Column of each class's swap, to read the reversed order in the direct one's terms.
        order = [classes.index(self._SWAPPED[c]) for c in classes]
        result: np.ndarray = (direct + reverse[:, order]) / 2.0
        return result

    def label_value(self, payload: dict[str, Any], target: Hashable) -> dict[str, Any]:
        if target == TIE:
            return {"preferred": TIE}
        index = 0 if target == FIRST else 1
        return {"preferred": payload["responses"][index]["id"]}
