"""Adaptive progress reads: labeling campaigns every 5 s, idle ones backing off by doubling to
60 s, Completed ones every 300 s, a spec change read at once; which campaigns the progress
loop reads on a tick, from what the status writer keeps of each."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from labelops.operator.progress_interval import (
    COMPLETED_INTERVAL,
    IDLE_MAX_INTERVAL,
    LABELING_INTERVAL,
    ReadSchedule,
    due_now,
    read_interval,
)
from labelops.operator.status_writer import KnownCampaign, StatusWriter

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


# --- the loop's choice of campaigns to read ------------------------------------------------


def test_the_loop_reads_the_never_read_and_the_due_not_the_rest_or_the_busy() -> None:
    labeling, busy = ReadSchedule(), ReadSchedule()
    labeling.record(T0, "moved", generation=1)  # read again in 5 s
    idle = ReadSchedule(last_read=T0, last_generation=1, interval=s(20))  # backed off
    busy.record(T0, "x", generation=1)
    schedules = {"ns/labeling": labeling, "ns/idle": idle, "ns/busy": busy}
    campaigns = [("ns/new", 1), ("ns/labeling", 1), ("ns/idle", 1), ("ns/busy", 1)]
    at = T0 + dt.timedelta(seconds=6)
    assert due_now(at, campaigns, schedules, busy={"ns/busy"}) == ["ns/new", "ns/labeling"]
    later = T0 + dt.timedelta(seconds=21)
    assert due_now(later, campaigns, schedules, busy=set()) == [key for key, _ in campaigns]


def test_the_loop_reads_a_new_generation_at_once() -> None:
    schedule = ReadSchedule()
    schedule.record(T0, "x", generation=1)
    schedules = {"ns/c": schedule}
    soon = T0 + dt.timedelta(seconds=1)
    assert due_now(soon, [("ns/c", 1)], schedules, busy=set()) == []
    assert due_now(soon, [("ns/c", 2)], schedules, busy=set()) == ["ns/c"]


def test_what_the_loop_asks_of_every_campaign_is_kept_beside_its_copy() -> None:
    writer = StatusWriter(None, lambda *_: None)  # type: ignore[arg-type]  # no request here
    ready = {"type": "SchemaReady", "status": "True"}
    writer.seen_campaign(campaign("a", "1", generation=3))
    writer.seen_campaign(campaign("b", "2", generation=1, conditions=[ready]))
    writer.seen_campaign(campaign("c", "3", conditions=[ready], deleting=True))
    assert writer.known_campaigns() == [
        KnownCampaign("ns/a", 3, schema_ready=False, deleting=False),
        KnownCampaign("ns/b", 1, schema_ready=True, deleting=False),
        KnownCampaign("ns/c", 1, schema_ready=True, deleting=True),
    ]
    # a newer copy replaces what is kept; an older one does not
    writer.seen_campaign(campaign("a", "5", generation=4, conditions=[ready]))
    writer.seen_campaign(campaign("a", "4", generation=3))
    assert writer.known_campaigns()[0] == KnownCampaign("ns/a", 4, True, False)
    writer.unseen_campaign("ns", "b")
    assert [known.key for known in writer.known_campaigns()] == ["ns/a", "ns/c"]


def campaign(
    name: str,
    version: str,
    *,
    generation: int = 1,
    conditions: list[dict[str, str]] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "namespace": "ns",
        "name": name,
        "resourceVersion": version,
        "generation": generation,
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {}, "status": {"conditions": conditions or []}}
