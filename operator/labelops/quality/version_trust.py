"""Whether a model version's predictions may be accepted without people (issue 10).

Pure: from a version's audits (oldest first) and the campaign's autoAccept settings, decide
its threshold (calibration.choose_threshold: fixed-sequence Clopper-Pearson), and whether
the brake holds (calibration.drift_detected over the rolling window of the latest
`brake_window` audits at or above a threshold). The brake watches two populations: the
audits above the threshold proven now, and the audits above `machine_floor`, the lowest
confidence of the version's counted machine labels (the population those labels came from).
The second matters when failing audits make every threshold unprovable: the version then
loses its threshold, but the labels it already gave must still be withdrawn if the window
they came from drifted.
A braked version stays braked: its machine labels since its last passing window are
withdrawn and it is never trusted again; a new version is calibrated on its own audits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from labelops.quality.calibration import Audit, choose_threshold, drift_detected


@dataclass(frozen=True)
class TimedAudit(Audit):
    """An audit and when it was made: the brake's window is the latest ones."""

    at: datetime


@dataclass(frozen=True)
class Calibration:
    """A model version's calibration: its proven threshold (None: none yet), whether
    auto-accept trusts it and whether the brake stopped it, the audits it rests on with the
    lower bound of their accuracy, and why. The quality job computes it (VersionCalibration)
    and records it in model_versions, where the operator reads it (store.summaries)."""

    threshold: float | None
    trusted: bool
    braked: bool
    audits: int
    audits_correct: int
    lower_bound: float | None
    message: str

    @property
    def accuracy(self) -> float | None:
        return self.audits_correct / self.audits if self.audits else None


@dataclass(frozen=True)
class VersionCalibration(Calibration):
    # The newest audit of the window that just passed (None: no window passed this time).
    passing_at: datetime | None


def _untrusted(audits: Sequence[TimedAudit], braked: bool, message: str) -> VersionCalibration:
    correct = sum(1 for a in audits if a.correct)
    return VersionCalibration(None, False, braked, len(audits), correct, None, message, None)


def calibrate_version(
    audits: Sequence[TimedAudit],
    target_accuracy: float,
    confidence_level: float,
    brake_window: int,
    already_braked: bool,
    machine_floor: float | None = None,
) -> VersionCalibration:
    if already_braked:
        return _untrusted(
            audits,
            True,
            "braked: auto-accept stays off for this version; a new version is calibrated "
            "on its own audits",
        )
    decision = choose_threshold(audits, target_accuracy, confidence_level)
    # The brake window at the proven threshold, and at the floor of the labels given.
    drifts = {}
    for floor in (decision.threshold, machine_floor):
        if floor is not None:
            window = [a for a in audits if a.confidence >= floor][-brake_window:]
            drift = drift_detected(window, target_accuracy, confidence_level)
            if drift.drifted:
                return _untrusted(
                    audits, True, f"braked: audits at confidence >= {floor:.4f}: {drift.reason}"
                )
            drifts[floor] = (window, drift)
    if decision.threshold is None:
        return _untrusted(audits, False, decision.reason)
    window, drift = drifts[decision.threshold]
    passed = next(t for t in decision.tested if t.threshold == decision.threshold)
    return VersionCalibration(
        decision.threshold,
        True,
        False,
        len(audits),
        sum(1 for a in audits if a.correct),
        passed.lower_bound,
        f"{decision.reason}; brake window: {drift.reason}",
        passing_at=window[-1].at if window else None,
    )
