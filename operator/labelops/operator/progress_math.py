"""Progress arithmetic: from O(1) counters to status.progress, the label rate and an ETA.

Pure. The rate is measured over a sliding window of samples the operator keeps in memory;
after a restart it is unknown until two samples exist, and the last published rate stands.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass, field

from labelops.api.campaign import CampaignSpec, Counters, Progress, Target
from labelops.store.progress import ProgressCounts

RATE_WINDOW = dt.timedelta(minutes=15)
# A rate over less time than this is noise (two reads a few seconds apart).
MIN_RATE_SPAN = dt.timedelta(seconds=20)
# Unchanged counters still refresh rate and ETA this often, so a stalled campaign's rate decays.
REFRESH_UNCHANGED = dt.timedelta(minutes=1)


@dataclass
class RateWindow:
    """(time, labels) samples of one campaign within RATE_WINDOW."""

    samples: deque[tuple[dt.datetime, int]] = field(default_factory=deque)

    def add(self, now: dt.datetime, labels: int) -> None:
        if self.samples and labels < self.samples[-1][1]:
            # counters went backwards (schema recreated): old samples are meaningless
            self.samples.clear()
        self.samples.append((now, labels))
        while self.samples and now - self.samples[0][0] > RATE_WINDOW:
            self.samples.popleft()

    def per_hour(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, l0), (t1, l1) = self.samples[0], self.samples[-1]
        span = t1 - t0
        if span < MIN_RATE_SPAN:
            return None
        return (l1 - l0) * 3600.0 / span.total_seconds()


def labels_target(target: Target) -> int:
    return target.items * target.labels_per_item


def target_met(counts: ProgressCounts, target: Target) -> bool:
    return counts.items_completed >= target.items


def counts_labels_exactly(spec: CampaignSpec) -> bool:
    """Whether every item completes at exactly labelsPerItem labels. Adaptive overlap and
    auto-accept complete items at other counts, so their progress is counted in items."""
    overlap = spec.quality is not None and spec.quality.overlap is not None
    auto_accept = spec.model is not None and spec.model.auto_accept is not None
    return not (overlap or auto_accept)


def build_progress(
    counts: ProgressCounts,
    target: Target,
    rate_per_hour: float | None,
    previous: Progress | None,
    now: dt.datetime,
    exact_labels: bool = True,
) -> Progress:
    """Progress in labels against items x labelsPerItem, or, when items complete at other
    label counts (exact_labels False), in completed items against target.items; the ETA
    then spends the labels an item has taken so far on each remaining one."""
    goal = labels_target(target)
    if rate_per_hour is None:
        rate_per_hour = previous.labels_per_hour if previous is not None else 0.0
    if exact_labels:
        remaining = max(goal - counts.labels, 0)
        done, whole, unit = counts.labels, goal, ""
    else:
        per_item = counts.labels / counts.items_completed if counts.items_completed else 1.0
        remaining = round(max(target.items - counts.items_completed, 0) * per_item)
        done, whole, unit = counts.items_completed, target.items, " items"
    eta: dt.datetime | None = None
    if remaining > 0 and rate_per_hour > 0:
        eta = (now + dt.timedelta(hours=remaining / rate_per_hour)).replace(microsecond=0)
    percent = min(100.0, round(100.0 * done / whole, 1)) if whole else 100.0
    return Progress(
        items_total=counts.items_total,
        items_completed=counts.items_completed,
        labels=counts.labels,
        labels_target=goal,
        percent=percent,
        labels_per_hour=round(rate_per_hour, 1),
        eta=eta,
        summary=f"{done}/{whole}{unit}",
    )


def build_counters(counts: ProgressCounts) -> Counters:
    return Counters(
        human_labeled=counts.human_labeled,
        machine_labeled=counts.machine_labeled,
        rejected=counts.rejected,
        dead_lettered=counts.dead_lettered,
    )


def _counts_of(progress: Progress) -> tuple[int, int, int, int]:
    return (progress.items_total, progress.items_completed, progress.labels, progress.labels_target)


def should_write(
    old: Progress | None,
    old_counters: Counters | None,
    new: Progress,
    new_counters: Counters,
    last_written: dt.datetime | None,
    now: dt.datetime,
) -> bool:
    """Write when a counter moved; refresh rate/ETA of an unchanged campaign only rarely."""
    if old is None or old_counters != new_counters or _counts_of(old) != _counts_of(new):
        return True
    if old == new:
        return False
    return last_written is None or now - last_written >= REFRESH_UNCHANGED
