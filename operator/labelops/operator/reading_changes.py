"""What one reading of a campaign's schema changes in its status: progress and counters,
status.model, status.quality and the ModelTrusted condition. Shared by the progress loop
(tracking.py) and the first reconcile pass, which writes the first reading with its own
status write instead of leaving it to a write of its own a second later."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from labelops.api.campaign import MODEL_TRUSTED, CampaignSpec, CampaignStatus
from labelops.operator.conditions import Verdict, find
from labelops.operator.context import ProgressTracker
from labelops.operator.model_quality import (
    build_model_status,
    build_quality_status,
    model_trusted_verdict,
)
from labelops.operator.progress_math import (
    build_counters,
    build_progress,
    counts_labels_exactly,
    should_write,
    target_met,
)
from labelops.store.summaries import CampaignReading


@dataclass(frozen=True)
class ReadingChanges:
    """Status fields by their Python name, verdicts and conditions to drop."""

    fields: dict[str, Any]
    verdicts: tuple[Verdict, ...]
    drop: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.fields or self.verdicts or self.drop)


def reading_changes(
    tracker: ProgressTracker,
    status: CampaignStatus,
    spec: CampaignSpec,
    generation: int,
    reading: CampaignReading,
    now: dt.datetime,
) -> ReadingChanges:
    """Records the reading in the tracker (read schedule, rate window) and returns what
    differs from the written status. The caller sets tracker.last_written once a change
    with "progress" in it is written."""
    counts = reading.counts
    tracker.schedule.record(
        now,
        (counts, reading.model, reading.quality),
        completed=target_met(counts, spec.target),
        generation=generation,
    )
    tracker.window.add(now, counts.labels)
    progress = build_progress(
        counts,
        spec.target,
        tracker.window.per_hour(),
        status.progress,
        now,
        exact_labels=counts_labels_exactly(spec),
    )
    counters = build_counters(counts)
    fields: dict[str, Any] = {}
    if should_write(
        status.progress, status.counters, progress, counters, tracker.last_written, now
    ):
        fields.update(progress=progress, counters=counters, last_progress_at=now)
    fields.update(summary_changes(status, spec, reading))
    verdicts, drop = trust_changes(status, spec, generation, reading)
    return ReadingChanges(fields, verdicts, drop)


def summary_changes(
    status: CampaignStatus, spec: CampaignSpec, reading: CampaignReading
) -> dict[str, Any]:
    """status.model and status.quality, only those that differ from what is written."""
    changes: dict[str, Any] = {}
    model = build_model_status(spec, reading.counts, reading.model)
    if model != status.model:
        changes["model"] = model
    quality = build_quality_status(reading.counts, reading.quality)
    if quality != status.quality:
        changes["quality"] = quality
    return changes


def trust_changes(
    status: CampaignStatus, spec: CampaignSpec, generation: int, reading: CampaignReading
) -> tuple[tuple[Verdict, ...], tuple[str, ...]]:
    """The ModelTrusted verdict when it differs from the written condition; or the
    condition to drop once the campaign has no model.autoAccept any more."""
    verdict = model_trusted_verdict(spec, reading.model)
    current = find(status.conditions, MODEL_TRUSTED)
    if verdict is None:
        return (), ((MODEL_TRUSTED,) if current is not None else ())
    if current is not None and (
        current.status,
        current.reason,
        current.message,
        current.observed_generation,
    ) == (verdict.status, verdict.reason, verdict.message, generation):
        return (), ()
    return (verdict,), ()
