"""Whether a model version's predictions may be accepted without people (issue 10).

Pure: from a version's audits (oldest first) and the campaign's autoAccept settings, decide
its threshold (calibration.choose_threshold: fixed-sequence Clopper-Pearson), and whether
the brake holds (calibration.drift_detected over the rolling window of the latest
`brake_window` audits at or above the threshold, the population machine labels come from).
A braked version stays braked: its machine labels since its last passing window are
withdrawn and it is never trusted again; a new version is calibrated on its own audits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from labelops.quality.calibration import Audit, choose_threshold, drift_detected


@dataclass(frozen=True)
class TimedAudit:
    confidence: float
    correct: bool
    at: datetime


@dataclass(frozen=True)
class VersionCalibration:
    threshold: float | None
    trusted: bool
    braked: bool
    audits: int
    audits_correct: int
    lower_bound: float | None
    # The newest audit of the window that just passed (None: no window passed this time).
    passing_at: datetime | None
    message: str

    @property
    def accuracy(self) -> float | None:
        return self.audits_correct / self.audits if self.audits else None


def calibrate_version(
    audits: Sequence[TimedAudit],
    target_accuracy: float,
    confidence_level: float,
    brake_window: int,
    already_braked: bool,
) -> VersionCalibration:
    correct = sum(1 for a in audits if a.correct)
    if already_braked:
        return VersionCalibration(
            None,
            False,
            True,
            len(audits),
            correct,
            None,
            None,
            "braked: auto-accept stays off for this version; a new version is calibrated "
            "on its own audits",
        )
    decision = choose_threshold(
        [Audit(a.confidence, a.correct) for a in audits], target_accuracy, confidence_level
    )
    if decision.threshold is None:
        return VersionCalibration(
            None, False, False, len(audits), correct, None, None, decision.reason
        )
    above = [a for a in audits if a.confidence >= decision.threshold]
    window = above[-brake_window:]
    drift = drift_detected(
        [Audit(a.confidence, a.correct) for a in window], target_accuracy, confidence_level
    )
    lower = next(
        (t.lower_bound for t in decision.tested if t.threshold == decision.threshold), None
    )
    if drift.drifted:
        return VersionCalibration(
            None,
            False,
            True,
            len(audits),
            correct,
            lower,
            None,
            f"braked at threshold {decision.threshold:.4f}: {drift.reason}",
        )
    return VersionCalibration(
        decision.threshold,
        True,
        False,
        len(audits),
        correct,
        lower,
        window[-1].at if window else None,
        f"{decision.reason}; brake window: {drift.reason}",
    )
