"""status.progress: O(1) counters turned into percent, rate, ETA; written only on change."""

from __future__ import annotations

import datetime as dt

from labelops.api.campaign import CampaignSpec, Counters, Target
from labelops.operator.progress_math import (
    RateWindow,
    build_counters,
    build_progress,
    counts_labels_exactly,
    should_write,
    target_met,
)
from labelops.store.progress import ProgressCounts

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
TARGET = Target(items=300, labels_per_item=3)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def counts(labels: int, completed: int = 0, items: int = 300) -> ProgressCounts:
    return ProgressCounts(
        items_total=items,
        items_completed=completed,
        labels=labels,
        human_labeled=labels,
        machine_labeled=0,
        rejected=2,
    )


def test_progress_reports_labels_against_items_times_overlap() -> None:
    progress = build_progress(counts(450, completed=100), TARGET, None, None, T0)
    assert progress.labels_target == 900
    assert progress.percent == 50.0
    assert progress.summary == "450/900"
    assert progress.items_completed == 100
    assert progress.eta is None, "no rate known yet, no ETA"


def test_eta_follows_the_rate() -> None:
    progress = build_progress(counts(450), TARGET, 900.0, None, T0)
    assert progress.labels_per_hour == 900.0
    assert progress.eta == T0 + dt.timedelta(minutes=30)


def test_percent_never_exceeds_100_and_done_has_no_eta() -> None:
    progress = build_progress(counts(1000, completed=300), TARGET, 500.0, None, T0)
    assert progress.percent == 100.0
    assert progress.eta is None


def test_unknown_rate_keeps_the_last_published_one() -> None:
    previous = build_progress(counts(100), TARGET, 600.0, None, T0)
    progress = build_progress(counts(110), TARGET, None, previous, at(5))
    assert progress.labels_per_hour == 600.0


def test_rate_window_needs_a_meaningful_span() -> None:
    window = RateWindow()
    window.add(at(0), 0)
    assert window.per_hour() is None
    window.add(at(5), 10)
    assert window.per_hour() is None, "5 seconds is noise"
    window.add(at(60), 60)
    assert window.per_hour() == 3600.0


def test_rate_window_forgets_old_samples_and_resets_on_a_counter_drop() -> None:
    window = RateWindow()
    window.add(at(0), 0)
    window.add(at(3600), 100)
    window.add(at(3660), 160)
    assert window.per_hour() == 3600.0  # only the last minute counts
    window.add(at(3720), 5)
    assert window.per_hour() is None


def test_target_met_when_enough_items_are_complete() -> None:
    assert not target_met(counts(897, completed=299), TARGET)
    assert target_met(counts(900, completed=300), TARGET)


def test_counters_come_from_the_same_read() -> None:
    assert build_counters(counts(10)) == Counters(human_labeled=10, machine_labeled=0, rejected=2)


def test_written_only_when_something_changed() -> None:
    first = build_progress(counts(10), TARGET, None, None, T0)
    c = build_counters(counts(10))
    assert should_write(None, None, first, c, None, T0)
    same = build_progress(counts(10), TARGET, None, first, at(5))
    assert not should_write(first, c, same, c, T0, at(5))
    moved = build_progress(counts(11), TARGET, None, first, at(5))
    assert should_write(first, c, moved, build_counters(counts(11)), T0, at(5))
    rejected = Counters(human_labeled=10, machine_labeled=0, rejected=3)
    assert should_write(first, c, same, rejected, T0, at(5))


def test_a_quiet_campaign_refreshes_rate_and_eta_only_once_a_minute() -> None:
    first = build_progress(counts(10), TARGET, 600.0, None, T0)
    c = build_counters(counts(10))
    slower = build_progress(counts(10), TARGET, 300.0, first, at(10))
    assert not should_write(first, c, slower, c, T0, at(10))
    assert should_write(first, c, slower, c, T0, at(61))


def test_items_that_complete_at_other_label_counts_are_counted_in_items() -> None:
    """Adaptive overlap or auto-accept: 150 of 300 items done with 300 labels (2 each)."""
    progress = build_progress(counts(300, completed=150), TARGET, 600.0, None, T0, False)
    assert progress.percent == 50.0
    assert progress.summary == "150/300 items"
    # 150 items left at the 2 labels an item took so far, at 600 labels an hour: 30 minutes.
    assert progress.eta == T0 + dt.timedelta(minutes=30)
    done = build_progress(counts(400, completed=300), TARGET, 600.0, None, T0, False)
    assert (done.percent, done.eta, done.summary) == (100.0, None, "300/300 items")


def test_only_exact_n_campaigns_count_progress_in_labels() -> None:
    base = {
        "task": {"type": "classification", "choices": ["ham", "spam"], "instructions": "x"},
        "target": {"items": 10},
        "labelers": {"tokenSecretRef": {"name": "t"}},
    }
    assert counts_labels_exactly(CampaignSpec.model_validate(base))
    overlap = {**base, "quality": {"overlap": {"min": 2, "max": 5, "agreement": 0.9}}}
    assert not counts_labels_exactly(CampaignSpec.model_validate(overlap))
    model = {**base, "model": {"autoAccept": {}}}
    assert not counts_labels_exactly(CampaignSpec.model_validate(model))
    gold_only = {**base, "quality": {"gold": {}}, "model": {"order": "uncertainty"}}
    assert counts_labels_exactly(CampaignSpec.model_validate(gold_only))
