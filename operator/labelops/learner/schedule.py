"""When to retrain: every K new human labels, or after T seconds if any label is new.

The first attempt comes as soon as the learner has read both topics to their end. Retraining
on unchanged labels would publish the same version with the same predictions, so the timer
only fires when labels changed; new items are scored with the current model meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetrainPolicy:
    every_labels: int
    every_seconds: float

    def due(
        self,
        labels_now: int,
        labels_at_last_attempt: int | None,
        seconds_since_last_attempt: float | None,
    ) -> bool:
        if labels_at_last_attempt is None or seconds_since_last_attempt is None:
            return True
        new = labels_now - labels_at_last_attempt
        if new <= 0:
            return False
        return new >= self.every_labels or seconds_since_last_attempt >= self.every_seconds
