"""Resync places: every campaign at its own place in the period, evenly spread."""

from __future__ import annotations

import uuid

from labelops.operator.resync import RESYNC_SECONDS, first_resync_delay, resync_due


def test_first_resync_is_between_half_and_one_and_a_half_periods() -> None:
    delays = [first_resync_delay(str(uuid.uuid4())) for _ in range(2000)]
    assert all(RESYNC_SECONDS / 2 <= d < 1.5 * RESYNC_SECONDS for d in delays)


def test_a_campaign_keeps_its_place_across_restarts() -> None:
    uid = "3f1c2a9e-7d4b-4c1e-9a0f-5b6d7e8f9a0b"
    assert first_resync_delay(uid) == first_resync_delay(uid)
    assert first_resync_delay(uid, 60.0) == first_resync_delay(uid) / RESYNC_SECONDS * 60.0


def test_a_thousand_campaigns_applied_at_once_resync_evenly() -> None:
    # Ten slices of the period: none holds much more than a tenth of the thousand (at a
    # fixed delay, one slice would hold all of them).
    uids = [str(uuid.UUID(int=i * 7919 + 13)) for i in range(1000)]
    slices = [0] * 10
    for uid in uids:
        place = (first_resync_delay(uid) % RESYNC_SECONDS) / RESYNC_SECONDS
        slices[int(place * 10)] += 1
    assert max(slices) < 150, slices
    assert min(slices) > 50, slices


def test_a_campaign_passed_recently_is_not_passed_again() -> None:
    assert resync_due(None), "never passed in this process: resync"
    assert not resync_due(10.0), "created ten seconds ago: no resync yet"
    assert not resync_due(RESYNC_SECONDS / 2 - 1)
    assert resync_due(RESYNC_SECONDS / 2)
    assert resync_due(RESYNC_SECONDS * 3)
