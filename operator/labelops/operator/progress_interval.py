"""How long the operator waits before reading one campaign's progress again.

Why: one operator tracks up to a thousand campaigns, and reading each one's schema every few
seconds costs hundreds of Postgres reads a second even when nobody labels. So the pace
follows what the campaign does:

- labeling (what a read saw, counters or model or quality summary, moved within
  LABELING_WINDOW): every LABELING_INTERVAL, as fresh as a dashboard wants;
- idle (nothing moved for longer): the interval doubles from LABELING_INTERVAL up to
  IDLE_MAX_INTERVAL, so a campaign that starts again is noticed within a minute;
- completed (target met) and idle: every COMPLETED_INTERVAL. Its last minute stays at the
  labeling pace, so the final quality and model summaries that land just after the last
  label are still shown at once; a spec change (a raised target) is read at once because
  the schedule keys on generation.

Pure: callers pass the clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass

LABELING_INTERVAL = dt.timedelta(seconds=5)
LABELING_WINDOW = dt.timedelta(minutes=1)
IDLE_MAX_INTERVAL = dt.timedelta(seconds=60)
COMPLETED_INTERVAL = dt.timedelta(seconds=300)
# A read that is due within this much of a tick of the progress loop is taken then, so
# scheduling jitter never pushes it to the next tick.
TICK_SLACK = dt.timedelta(milliseconds=500)


def read_interval(
    *, completed: bool, since_change: dt.timedelta | None, previous: dt.timedelta | None
) -> dt.timedelta:
    """The wait before the next read, given the campaign's state after this read.

    since_change: time since what the reads see last moved (None: never seen moving);
    previous: the wait chosen after the last read (None: this is the first read).
    """
    if since_change is not None and since_change < LABELING_WINDOW:
        return LABELING_INTERVAL
    if completed:
        return COMPLETED_INTERVAL
    # Idle: back off by doubling. A first read, or one just after Completed (a raised
    # target re-opened the campaign), starts the doubling from the labeling pace.
    if previous is None or previous > IDLE_MAX_INTERVAL:
        previous = LABELING_INTERVAL
    return min(previous * 2, IDLE_MAX_INTERVAL)


@dataclass
class ReadSchedule:
    """Adaptive pacing of progress reads for one campaign (kept in memory by the operator)."""

    last_read: dt.datetime | None = None
    last_change: dt.datetime | None = None
    last_observed: object = None
    last_generation: int | None = None
    interval: dt.timedelta = LABELING_INTERVAL

    def due(self, now: dt.datetime, generation: int | None = None) -> bool:
        if self.last_read is None:
            return True
        if generation is not None and generation != self.last_generation:
            return True  # the spec changed (say, a raised target): read at once
        return now - self.last_read >= self.interval - TICK_SLACK

    def record(
        self,
        now: dt.datetime,
        observed: object,
        *,
        completed: bool = False,
        generation: int | None = None,
    ) -> None:
        """A read at `now` saw `observed` (any value compared with ==: counters, summaries)."""
        if self.last_read is None or observed != self.last_observed:
            self.last_change = now
        self.last_observed = observed
        self.last_read = now
        self.last_generation = generation
        since_change = now - self.last_change if self.last_change is not None else None
        self.interval = read_interval(
            completed=completed, since_change=since_change, previous=self.interval
        )


def due_now(
    now: dt.datetime,
    campaigns: Iterable[tuple[str, int | None]],
    schedules: Mapping[str, ReadSchedule],
    busy: Container[str],
) -> list[str]:
    """The campaigns (key, generation) to read now: never read, or due by their schedule,
    and not still being read since an earlier tick."""
    due = []
    for key, generation in campaigns:
        if key in busy:
            continue
        schedule = schedules.get(key)
        if schedule is None or schedule.due(now, generation):
            due.append(key)
    return due
