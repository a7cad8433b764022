"""Adaptive progress reads: labeling campaigns every 5 s, idle ones backing off by doubling to
60 s, Completed ones every 300 s, a spec change read at once."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from labelops.operator.progress_interval import (
    COMPLETED_INTERVAL,
    IDLE_MAX_INTERVAL,
    LABELING_INTERVAL,
    ReadSchedule,
    read_interval,
)

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def s(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


def at(seconds: float) -> dt.datetime:
    return T0 + s(seconds)


def test_the_pace_matches_what_the_issue_asks() -> None:
    assert (s(5), s(60), s(300)) == (LABELING_INTERVAL, IDLE_MAX_INTERVAL, COMPLETED_INTERVAL)


@pytest.mark.parametrize("since_change", [s(0), s(30), s(59.9)])
def test_a_campaign_labeled_within_the_last_minute_stays_at_5_s(since_change: dt.timedelta) -> None:
    for previous in (None, s(5), s(40), s(60)):
        assert read_interval(completed=False, since_change=since_change, previous=previous) == s(5)


def test_an_idle_campaign_backs_off_by_doubling_up_to_60_s() -> None:
    interval, seen = s(5), []
    for _ in range(6):
        interval = read_interval(completed=False, since_change=s(120), previous=interval)
        seen.append(interval.total_seconds())
    assert seen == [10, 20, 40, 60, 60, 60]


def test_never_seen_moving_counts_as_idle() -> None:
    assert read_interval(completed=False, since_change=None, previous=None) == s(10)


def test_a_completed_campaign_is_read_every_300_s_once_nothing_moves() -> None:
    assert read_interval(completed=True, since_change=s(60), previous=s(5)) == s(300)
    assert read_interval(completed=True, since_change=None, previous=None) == s(300)


def test_a_just_completed_campaign_stays_fresh_for_its_last_summaries() -> None:
    assert read_interval(completed=True, since_change=s(10), previous=s(5)) == s(5)


def test_a_reopened_idle_campaign_restarts_the_backoff_from_the_bottom() -> None:
    assert read_interval(completed=False, since_change=s(900), previous=s(300)) == s(10)


def reads(
    schedule: ReadSchedule,
    labels_at: dict[int, int],
    until: int,
    completed: bool = False,
    generation: int | None = None,
) -> list[int]:
    """Tick every 5 s like the timer; at each due tick record the labels then; the read times."""
    taken, labels = [], 0
    for t in range(0, until + 1, 5):
        labels = labels_at.get(t, labels)
        if schedule.due(at(t), generation):
            schedule.record(at(t), labels, completed=completed, generation=generation)
            taken.append(t)
    return taken


def test_schedule_reads_every_tick_while_labeling_then_backs_off() -> None:
    # labels move every 5 s for the first 30 s, then stop
    moving = {t: t for t in range(0, 31, 5)}
    taken = reads(ReadSchedule(), moving, until=400)
    assert taken[:19] == list(range(0, 91, 5))  # fresh for a minute after the last change
    gaps = [b - a for a, b in itertools.pairwise(taken[18:])]
    assert gaps == [10, 20, 40, 60, 60, 60, 60]


def test_schedule_speeds_up_again_at_the_first_read_that_sees_a_change() -> None:
    schedule = ReadSchedule()
    schedule.record(T0, 0)
    for t in (70, 80, 100, 140):  # idle: 10, 20, 40 s apart
        assert schedule.due(at(t))
        schedule.record(at(t), 0)
    assert not schedule.due(at(190))
    assert schedule.due(at(200))
    schedule.record(at(200), 3)  # moving again
    assert not schedule.due(at(204))
    assert schedule.due(at(205))


def test_a_completed_campaign_is_read_every_5_minutes_after_its_last_minute() -> None:
    schedule = ReadSchedule()
    taken = reads(schedule, {0: 900}, until=1000, completed=True, generation=1)
    assert taken == [*range(0, 61, 5), 360, 660, 960]


def test_any_observed_change_counts_not_only_labels() -> None:
    schedule = ReadSchedule()
    schedule.record(T0, (900, "quality v1"), completed=True)
    schedule.record(at(60), (900, "quality v1"), completed=True)
    assert schedule.interval == COMPLETED_INTERVAL
    schedule.record(at(360), (900, "quality v2"), completed=True)  # a late summary
    assert schedule.interval == LABELING_INTERVAL


def test_a_spec_change_is_read_at_once() -> None:
    schedule = ReadSchedule()
    schedule.record(T0, 900, completed=True, generation=1)
    schedule.record(at(60), 900, completed=True, generation=1)
    assert not schedule.due(at(100), generation=1)
    assert schedule.due(at(100), generation=2)  # say, a raised target
    schedule.record(at(100), 900, completed=False, generation=2)
    assert not schedule.due(at(105), generation=2)
    assert schedule.due(at(110), generation=2)  # re-opened but idle: backoff from 10 s


def test_jitter_of_a_tick_does_not_skip_a_due_read() -> None:
    schedule = ReadSchedule()
    schedule.record(T0, 0)
    assert schedule.due(at(4.6))
    assert not schedule.due(at(4.4))
