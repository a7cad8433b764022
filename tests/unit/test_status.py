"""The status a campaign shows: conditions, kstatus summary, phase, Events (pure + a fake API)."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from typing import Any

import pytest

from labelops.api.campaign import CONDITION_TYPES
from labelops.clients.kube import Conflict
from labelops.operator.conditions import (
    SCHEMA_READY,
    STALLED,
    TARGET_MET,
    TOPICS_READY,
    WORKERS_READY,
    Reason,
    Verdict,
    not_stalled,
)
from labelops.operator.status_writer import StatusUpdate, StatusWriter, render_status

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=1)

HEALTHY = (
    Verdict.true(TOPICS_READY, Reason.TOPICS_IN_SYNC, "topics ok"),
    Verdict.true(SCHEMA_READY, Reason.SCHEMA_MIGRATED, "schema ok"),
    Verdict.true(WORKERS_READY, Reason.AVAILABLE, "2/2 workers available"),
    Verdict.false(TARGET_MET, Reason.LABELING, "0/300 items completed"),
    not_stalled(),
)


def render(
    current: dict[str, Any] | None = None,
    *verdicts: Verdict,
    generation: int = 1,
    observed: int | None = None,
    paused: bool = False,
    now: dt.datetime = T0,
) -> dict[str, Any]:
    status, _ = render_status(
        current or {}, generation, paused, StatusUpdate(tuple(verdicts), observed), now
    )
    assert status is not None
    return status


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_a_new_campaign_is_pending_and_reconciling_never_ready() -> None:
    status = render()
    assert status["phase"] == "Pending"
    assert condition(status, "Ready")["status"] == "False"
    assert condition(status, "Reconciling")["status"] == "True"
    assert "observedGeneration" not in status


def test_all_components_ready_for_the_current_generation_is_ready() -> None:
    status = render(None, *HEALTHY, generation=2, observed=2)
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Provisioned")
    assert condition(status, "Reconciling")["status"] == "False"
    assert condition(status, "Stalled")["status"] == "False"
    assert status["phase"] == "Running"
    assert status["observedGeneration"] == 2
    assert all(c["observedGeneration"] == 2 for c in status["conditions"])


def test_conditions_follow_metav1_shape_and_a_stable_order() -> None:
    status = render(None, *HEALTHY, observed=1)
    assert [c["type"] for c in status["conditions"]] == list(CONDITION_TYPES)
    for c in status["conditions"]:
        assert set(c) == {
            "type",
            "status",
            "reason",
            "message",
            "lastTransitionTime",
            "observedGeneration",
        }
        assert c["lastTransitionTime"] == "2026-01-01T12:00:00Z"


def test_an_unchanged_status_is_not_written_again() -> None:
    first = render(None, *HEALTHY, observed=1)
    again, events = render_status(first, 1, False, StatusUpdate(HEALTHY, 1), T1)
    assert again is None and events == []


def test_last_transition_time_moves_only_when_status_changes() -> None:
    first = render(None, *HEALTHY, observed=1, now=T0)
    same = Verdict.true(WORKERS_READY, Reason.AVAILABLE, "3/3 workers available")
    second = render(first, same, observed=1, now=T1)
    assert condition(second, WORKERS_READY)["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert condition(second, WORKERS_READY)["message"] == "3/3 workers available"
    flipped = Verdict.false(WORKERS_READY, Reason.ROLLING_OUT, "1/3 workers available")
    third = render(second, flipped, observed=1, now=T1)
    assert condition(third, WORKERS_READY)["lastTransitionTime"] == "2026-01-01T12:01:00Z"
    assert condition(third, "Ready")["lastTransitionTime"] == "2026-01-01T12:01:00Z"


def test_an_unreachable_backend_makes_ready_false_with_its_reason() -> None:
    healthy = render(None, *HEALTHY, observed=1)
    down = Verdict.unknown(TOPICS_READY, Reason.KAFKA_UNAVAILABLE, "Kafka at x:1 is unreachable")
    status = render(healthy, down, generation=2)
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "KafkaUnavailable")
    assert "Kafka at x:1 is unreachable" in ready["message"]
    assert condition(status, "Reconciling")["status"] == "True"
    assert condition(status, STALLED)["status"] == "False"
    assert status["observedGeneration"] == 1, "a failed pass does not advance it"


def test_stalled_makes_ready_false_stops_reconciling_and_fails_the_phase() -> None:
    refused = Verdict.false(TOPICS_READY, Reason.NOT_SUPPORTED, "kafka.partitions: 3 is fewer")
    stalled = Verdict.true(STALLED, Reason.NOT_SUPPORTED, "kafka.partitions: 3 is fewer")
    status = render(None, *HEALTHY, refused, stalled, generation=2, observed=2)
    assert condition(status, "Ready")["reason"] == "NotSupported"
    assert condition(status, "Ready")["status"] == "False"
    assert condition(status, "Reconciling")["status"] == "False"
    assert status["phase"] == "Failed"


def test_a_newer_generation_is_not_ready_until_reconciled() -> None:
    status = render(None, *HEALTHY, generation=3, observed=2)
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Progressing")
    assert condition(status, "Reconciling")["status"] == "True"
    assert status["phase"] == "Provisioning"


def test_rolling_out_workers_keep_the_campaign_reconciling() -> None:
    rolling = Verdict.false(WORKERS_READY, Reason.ROLLING_OUT, "0/2 workers available")
    status = render(None, *HEALTHY, rolling, observed=1)
    assert condition(status, "Ready")["reason"] == "RollingOut"
    assert condition(status, "Reconciling")["status"] == "True"
    assert status["phase"] == "Provisioning"


def test_paused_and_scaled_to_zero_is_ready_and_paused() -> None:
    zero = Verdict.true(WORKERS_READY, Reason.SCALED_TO_ZERO, "no workers wanted")
    status = render(None, *HEALTHY, zero, observed=1, paused=True)
    assert condition(status, "Ready")["status"] == "True"
    assert status["phase"] == "Paused"


def test_target_met_is_completed_and_still_ready() -> None:
    met = Verdict.true(TARGET_MET, Reason.TARGET_MET, "300/300 items completed")
    zero = Verdict.true(WORKERS_READY, Reason.SCALED_TO_ZERO, "no workers wanted")
    status = render(None, *HEALTHY, met, zero, observed=1, paused=True)
    assert status["phase"] == "Completed"
    assert condition(status, "Ready")["status"] == "True"


def test_other_fields_are_written_alongside() -> None:
    from labelops.api.campaign import Topics

    status, _ = render_status(
        {},
        1,
        False,
        StatusUpdate(fields={"topics": Topics(items="a", labels="b"), "schema_": "lc_x"}),
        T0,
    )
    assert status is not None
    assert status["topics"] == {"items": "a", "labels": "b"}
    assert status["schema"] == "lc_x"


def test_every_transition_is_an_event_and_problems_are_warnings() -> None:
    _, first = render_status({}, 1, False, StatusUpdate(HEALTHY, 1), T0)
    kinds = {(t.condition.type, t.condition.status.value, t.warning) for t in first}
    assert ("Ready", "True", False) in kinds
    assert (TOPICS_READY, "True", False) in kinds
    # a first "not stalled" / "not reconciling" is no news
    assert not any(t.condition.type in (STALLED, "Reconciling") for t in first)

    healthy = render(None, *HEALTHY, observed=1)
    down = Verdict.unknown(TOPICS_READY, Reason.KAFKA_UNAVAILABLE, "unreachable")
    _, changes = render_status(healthy, 1, False, StatusUpdate((down,)), T1)
    by_type = {t.condition.type: t for t in changes}
    assert set(by_type) == {TOPICS_READY, "Ready", "Reconciling"}
    assert by_type[TOPICS_READY].warning and by_type["Ready"].warning
    assert by_type[TOPICS_READY].event_reason == "KafkaUnavailable"
    assert by_type[TOPICS_READY].event_message == "TopicsReady=Unknown: unreachable"


def test_a_reason_change_with_the_same_status_is_a_transition() -> None:
    before = render(None, Verdict.unknown(TOPICS_READY, Reason.KAFKA_UNAVAILABLE, "x"))
    _, changes = render_status(
        before,
        1,
        False,
        StatusUpdate((Verdict.unknown(TOPICS_READY, Reason.POSTGRES_UNAVAILABLE, "y"),)),
        T1,
    )
    assert TOPICS_READY in {t.condition.type for t in changes}


def test_an_unreadable_status_is_rebuilt() -> None:
    status = render({"conditions": [{"type": "Ready"}]}, *HEALTHY, observed=1)
    assert condition(status, "Ready")["status"] == "True"


# --- the writer against a fake API server -----------------------------------------------


class FakeKube:
    def __init__(self, campaign: dict[str, Any] | None, conflicts: int = 0) -> None:
        self.campaign = campaign
        self.conflicts = conflicts
        self.patches: list[dict[str, Any]] = []
        self.deployment: dict[str, Any] | None = None
        # What the API server's watch cache serves (None: the live object, as if up to date).
        self.cache: dict[str, Any] | None = None
        self.current_reads = 0

    async def get(
        self, api_version: str, kind: str, namespace: str, name: str, cached: bool = False
    ) -> dict[str, Any] | None:
        assert (api_version, kind) == ("apps/v1", "Deployment")
        return self.deployment

    async def get_campaign(
        self, namespace: str, name: str, cached: bool = False
    ) -> dict[str, Any] | None:
        if cached and self.cache is not None:
            return copy.deepcopy(self.cache)
        self.current_reads += not cached
        return self.campaign

    async def patch_campaign_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> dict[str, Any]:
        if self.conflicts:
            self.conflicts -= 1
            assert self.campaign is not None
            self.campaign["metadata"]["resourceVersion"] += "x"
            raise Conflict("changed")
        assert self.campaign is not None
        if resource_version != self.campaign["metadata"]["resourceVersion"]:
            raise Conflict("patched from a stale copy")
        self.patches.append(status)
        self.campaign["status"] = status
        self.campaign["metadata"]["resourceVersion"] = str(
            int(resource_version.rstrip("x") or 0) + 1
        )
        return self.campaign


def campaign() -> dict[str, Any]:
    return {
        "apiVersion": "labelops.dev/v1alpha1",
        "kind": "LabelingCampaign",
        "metadata": {"namespace": "ns", "name": "c", "uid": "u", "generation": 1,
                     "resourceVersion": "1"},
        "spec": {"paused": False},
    }  # fmt: skip


def writer(kube: FakeKube) -> tuple[StatusWriter, list[tuple[str, str, str]]]:
    events: list[tuple[str, str, str]] = []
    sink = lambda body, type_, reason, message: events.append((type_, reason, message))  # noqa: E731
    return StatusWriter(kube, sink), events  # type: ignore[arg-type]


def test_writer_patches_posts_events_and_skips_unchanged_writes() -> None:
    kube = FakeKube(campaign())
    status, events = writer(kube)
    asyncio.run(status.write("ns", "c", StatusUpdate(HEALTHY, 1)))
    assert len(kube.patches) == 1
    assert ("Normal", "Provisioned", "Ready=True: topics, schema and workers match the spec") in (
        events
    )
    posted = len(events)
    asyncio.run(status.write("ns", "c", StatusUpdate(HEALTHY, 1)))
    assert len(kube.patches) == 1, "nothing changed, nothing written"
    assert len(events) == posted


def test_writer_rereads_and_retries_when_the_object_moved_on() -> None:
    kube = FakeKube(campaign(), conflicts=2)
    status, _ = writer(kube)
    result = asyncio.run(status.write("ns", "c", StatusUpdate(HEALTHY, 1)))
    assert result is not None and len(kube.patches) == 1


def test_writer_gives_up_with_a_retryable_error_under_constant_conflicts() -> None:
    import kopf

    kube = FakeKube(campaign(), conflicts=100)
    status, _ = writer(kube)
    with pytest.raises(kopf.TemporaryError, match="kept changing"):
        asyncio.run(status.write("ns", "c", StatusUpdate(HEALTHY, 1)))


def test_a_stale_cached_copy_never_hides_a_needed_write() -> None:
    # The writer's first read is the watch cache's copy. Here the cache still holds the
    # status from before the writer's last patch (WorkersReady True), the live object says
    # False: an update to True changes nothing on the stale copy, yet must be written.
    kube = FakeKube(campaign())
    status, _ = writer(kube)
    asyncio.run(status.write("ns", "c", StatusUpdate(HEALTHY, 1)))
    kube.cache = copy.deepcopy(kube.campaign)
    others = tuple(v for v in HEALTHY if v.type != WORKERS_READY)
    rolling = Verdict.false(WORKERS_READY, Reason.ROLLING_OUT, "0/1 workers available")
    asyncio.run(status.write("ns", "c", StatusUpdate((*others, rolling), 1)))
    assert kube.campaign is not None
    assert condition(kube.campaign["status"], WORKERS_READY)["status"] == "False"
    asyncio.run(status.write("ns", "c", StatusUpdate(HEALTHY, 1)))
    assert condition(kube.campaign["status"], WORKERS_READY)["status"] == "True"
    assert len(kube.patches) == 3


def test_an_up_to_date_cached_copy_spares_the_current_read() -> None:
    kube = FakeKube(campaign())
    status, _ = writer(kube)
    asyncio.run(status.write("ns", "c", StatusUpdate(HEALTHY, 1)))
    kube.cache = copy.deepcopy(kube.campaign)  # the cache caught up with the patch
    reads = kube.current_reads
    asyncio.run(status.write("ns", "c", StatusUpdate(HEALTHY, 1)))
    assert kube.current_reads == reads, "nothing changed: the cached copy was enough"


def test_writer_ignores_a_campaign_that_is_gone() -> None:
    status, events = writer(FakeKube(None))
    assert asyncio.run(status.write("ns", "c", StatusUpdate(HEALTHY, 1))) is None
    assert events == []


def test_workers_ready_is_read_from_the_live_deployment_at_write_time() -> None:
    kube = FakeKube(campaign())
    status, _ = writer(kube)
    others = tuple(v for v in HEALTHY if v.type != WORKERS_READY)
    kube.deployment = {
        "metadata": {"name": "c-worker", "generation": 1},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2},
    }
    asyncio.run(status.write("ns", "c", StatusUpdate(others, 1, workers_deployment="c-worker")))
    assert condition(kube.patches[-1], WORKERS_READY)["reason"] == "RollingOut"
    kube.deployment["status"]["availableReplicas"] = 2
    asyncio.run(status.write("ns", "c", StatusUpdate(workers_deployment="c-worker")))
    assert condition(kube.patches[-1], WORKERS_READY)["reason"] == "Available"
    assert condition(kube.patches[-1], "Ready")["status"] == "True"


def test_a_deployment_event_that_changes_no_verdict_needs_no_write() -> None:
    kube = FakeKube(campaign())
    status, _ = writer(kube)
    others = tuple(v for v in HEALTHY if v.type != WORKERS_READY)
    deployment: dict[str, Any] = {
        "metadata": {
            "namespace": "ns",
            "name": "c-worker",
            "generation": 1,
            "resourceVersion": "5",
        },
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 1},
    }
    status.seen_deployment(deployment)
    assert not status.workers_unchanged("ns", "c", "c-worker"), "nothing written yet"
    asyncio.run(status.write("ns", "c", StatusUpdate(others, 1, workers_deployment="c-worker")))
    assert kube.campaign is not None
    status.seen_campaign(kube.campaign)
    # The rollout moves on without changing what WorkersReady says (0/2 available).
    moved: dict[str, Any] = copy.deepcopy(deployment)
    moved["metadata"]["resourceVersion"] = "6"
    moved["status"]["updatedReplicas"] = 2
    status.seen_deployment(moved)
    assert status.workers_unchanged("ns", "c", "c-worker")
    # Available now: the verdict changes, so the write must happen.
    done: dict[str, Any] = copy.deepcopy(moved)
    done["metadata"]["resourceVersion"] = "7"
    done["status"]["availableReplicas"] = 2
    status.seen_deployment(done)
    assert not status.workers_unchanged("ns", "c", "c-worker")
    asyncio.run(status.write("ns", "c", StatusUpdate(workers_deployment="c-worker")))
    status.seen_campaign(kube.campaign)
    assert status.workers_unchanged("ns", "c", "c-worker")
    # A new generation of the campaign: its conditions are for the old one until written.
    newer: dict[str, Any] = copy.deepcopy(kube.campaign)
    newer["metadata"]["generation"] = 2
    newer["metadata"]["resourceVersion"] = "99"
    status.seen_campaign(newer)
    assert not status.workers_unchanged("ns", "c", "c-worker")
