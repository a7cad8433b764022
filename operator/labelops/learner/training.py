"""Training and scoring, pure: from items and their human labels to a model and predictions.

Deterministic for the same labels, whatever order they were read in: examples are sorted by
item id and the solver (lbfgs) has no randomness, so a restarted learner that trains on the
same labels publishes the same version with the same predictions.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from labelops.learner.tasks import TaskLearning
from labelops.learner.versions import version_name

Payload = dict[str, Any]


@dataclass(frozen=True)
class TrainingSet:
    item_ids: tuple[str, ...]
    inputs: tuple[Any, ...]
    targets: tuple[Hashable, ...]
    labels: int  # human labels on known items: the number the version is named after


@dataclass(frozen=True)
class CannotTrain:
    reason: str


@dataclass(frozen=True)
class Prediction:
    item_id: str
    value: dict[str, Any]
    confidence: float  # predict_proba of the predicted value


@dataclass(frozen=True)
class TrainedModel:
    version: str
    labels_trained_on: int
    items_trained_on: int
    classes: tuple[Hashable, ...]
    pipeline: Pipeline
    learning: TaskLearning

    def predict(self, items: Sequence[tuple[str, Payload]]) -> list[Prediction]:
        if not items:
            return []
        inputs = [self.learning.model_input(payload) for _, payload in items]
        probabilities = self.learning.probabilities(self.pipeline, inputs)
        best = np.argmax(probabilities, axis=1)  # ties: the first class in sorted order
        return [
            Prediction(
                item_id=item_id,
                value=self.learning.label_value(payload, self.classes[int(column)]),
                confidence=float(min(1.0, max(0.0, probabilities[row, column]))),
            )
            for row, ((item_id, payload), column) in enumerate(zip(items, best, strict=True))
        ]


def training_set(
    learning: TaskLearning,
    items: Mapping[str, Payload],
    labels: Mapping[str, Sequence[Any]],
) -> TrainingSet:
    """One example per known item whose human labels consolidate to a target.

    labels maps an item id to its human label values (one per labelId). Labels of items
    not read yet wait for their item; labels that mean no target (a choice not offered, a
    response id the item does not have) still count as read, not as examples."""
    ids: list[str] = []
    inputs: list[Any] = []
    targets: list[Hashable] = []
    counted = 0
    for item_id in sorted(labels):
        payload = items.get(item_id)
        values = labels[item_id]
        if payload is None or not values:
            continue
        counted += len(values)
        meant = [t for t in (learning.target(payload, v) for v in values) if t is not None]
        target = learning.consolidate(meant) if meant else None
        if target is None:
            continue
        ids.append(item_id)
        inputs.append(learning.model_input(payload))
        targets.append(target)
    return TrainingSet(tuple(ids), tuple(inputs), tuple(targets), counted)


def train(learning: TaskLearning, data: TrainingSet, min_labels: int) -> TrainedModel | CannotTrain:
    classes = sorted(set(data.targets), key=str)
    if len(data.targets) < min_labels:
        return CannotTrain(
            f"{len(data.targets)} items have a consolidated human label, at least "
            f"{min_labels} are needed (LABELOPS_LEARNER_MIN_LABELS)"
        )
    if len(classes) < 2:
        only = f" (all {classes[0]!r})" if classes else ""
        return CannotTrain(
            f"the human labels hold {len(classes)} class{only}: at least 2 are needed"
        )
    rows, targets = learning.training_rows(data.inputs, data.targets)
    pipeline = learning.pipeline()
    pipeline.fit(rows, list(targets))
    return TrainedModel(
        version=version_name(data.labels),
        labels_trained_on=data.labels,
        items_trained_on=len(data.targets),
        classes=tuple(pipeline.classes_.tolist()),
        pipeline=pipeline,
        learning=learning,
    )
