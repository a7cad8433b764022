"""What the operator spares the API server (issue 14): Events only for news, status writes
and reads from the newest copy seen, resync applies of unchanged objects not sent again.

Pure decisions, plus the status writer and the Kubernetes client against recording fakes of
the API server's answers (no network)."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from typing import Any

import pytest
from kubernetes import client as k8s

from labelops.api.campaign import MODEL_TRUSTED
from labelops.clients import kube as kube_module
from labelops.clients.kube import (
    REAPPLY_SECONDS,
    Conflict,
    Known,
    KubeClient,
    fingerprint,
    reusable,
    reusing,
    slim,
)
from labelops.operator import pass_scope
from labelops.operator.conditions import (
    READY,
    RECONCILING,
    SCHEMA_READY,
    STALLED,
    TARGET_MET,
    TOPICS_READY,
    WORKERS_READY,
    Reason,
    Verdict,
    not_stalled,
)
from labelops.operator.status_writer import StatusUpdate, StatusWriter, newer, render_status

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)

HEALTHY = (
    Verdict.true(TOPICS_READY, Reason.TOPICS_IN_SYNC, "topics ok"),
    Verdict.true(SCHEMA_READY, Reason.SCHEMA_MIGRATED, "schema ok"),
    Verdict.true(WORKERS_READY, Reason.AVAILABLE, "1/1 workers available"),
    Verdict.false(TARGET_MET, Reason.LABELING, "0/10 items completed"),
    not_stalled(),
)
ROLLING = Verdict.false(WORKERS_READY, Reason.ROLLING_OUT, "0/1 workers available")


def step(
    current: dict[str, Any], update: StatusUpdate, minutes: int = 0
) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """One write: the new status and the (condition, status, reason) that became Events."""
    status, changes = render_status(current, 1, False, update, T0 + dt.timedelta(minutes=minutes))
    assert status is not None
    events = [
        (c.condition.type, c.condition.status.value, c.condition.reason) for c in changes if c.news
    ]
    return status, events


# --- Events: news only ------------------------------------------------------------------


def test_a_campaign_coming_up_posts_one_event_ready_true() -> None:
    posted = []
    status, events = step({}, StatusUpdate())  # "Reconciling" before the work
    posted += events
    not_yet = tuple(v for v in HEALTHY if v.type != WORKERS_READY)
    status, events = step(status, StatusUpdate((*not_yet, ROLLING), 1), 1)
    posted += events
    status, events = step(status, StatusUpdate(HEALTHY), 2)
    posted += events
    assert posted == [(READY, "True", Reason.PROVISIONED)]


def test_trouble_and_recovery_are_news_and_reconciling_never() -> None:
    healthy, _ = step({}, StatusUpdate(HEALTHY, 1))
    down = Verdict.unknown(TOPICS_READY, Reason.KAFKA_UNAVAILABLE, "unreachable")
    broken, events = step(healthy, StatusUpdate((down,)), 1)
    assert (TOPICS_READY, "Unknown", Reason.KAFKA_UNAVAILABLE) in events
    assert (READY, "False", Reason.KAFKA_UNAVAILABLE) in events
    assert not any(kind == RECONCILING for kind, _, _ in events)
    _, events = step(broken, StatusUpdate(HEALTHY, 1), 2)
    assert set(events) == {
        (TOPICS_READY, "True", Reason.TOPICS_IN_SYNC),
        (READY, "True", Reason.PROVISIONED),
    }


def test_a_stall_is_news_and_so_is_its_end() -> None:
    stalled, events = step(
        {}, StatusUpdate((Verdict.true(STALLED, Reason.NOT_SUPPORTED, "no"),), 1)
    )
    assert (STALLED, "True", Reason.NOT_SUPPORTED) in events
    assert (READY, "False", Reason.NOT_SUPPORTED) in events
    _, events = step(stalled, StatusUpdate(HEALTHY, 1), 1)
    assert (STALLED, "False", not_stalled().reason) in events
    assert (READY, "True", Reason.PROVISIONED) in events


def test_target_met_and_a_reopened_target_are_news_the_first_labeling_is_not() -> None:
    healthy, events = step({}, StatusUpdate(HEALTHY, 1))
    assert not any(kind == TARGET_MET for kind, _, _ in events)
    met = Verdict.true(TARGET_MET, Reason.TARGET_MET, "10/10 items completed")
    done, events = step(healthy, StatusUpdate((met,)), 1)
    assert (TARGET_MET, "True", Reason.TARGET_MET) in events
    _, events = step(done, StatusUpdate((HEALTHY[3],)), 2)
    assert (TARGET_MET, "False", Reason.LABELING) in events


def test_model_trust_changes_are_news_after_the_first_verdict() -> None:
    healthy, _ = step({}, StatusUpdate(HEALTHY, 1))
    calibrating = Verdict.false(MODEL_TRUSTED, Reason.CALIBRATING, "20 audits so far")
    first, events = step(healthy, StatusUpdate((calibrating,)), 1)
    assert events == []
    trusted = Verdict.true(MODEL_TRUSTED, Reason.TRUSTED, "v1 trusted")
    _, events = step(first, StatusUpdate((trusted,)), 2)
    assert events == [(MODEL_TRUSTED, "True", Reason.TRUSTED)]


def test_a_ready_campaign_losing_ready_for_a_new_generation_is_news() -> None:
    healthy, _ = step({}, StatusUpdate(HEALTHY, 1))
    status, changes = render_status(healthy, 2, False, StatusUpdate(), T0)
    assert status is not None
    assert [(c.condition.type, c.condition.reason) for c in changes if c.news] == [
        (READY, Reason.PROGRESSING)
    ]


# --- resourceVersions --------------------------------------------------------------------


def versioned(rv: str) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": rv}}


def test_newer_compares_resource_versions_as_numbers() -> None:
    assert newer(versioned("10"), None)
    assert newer(versioned("10"), versioned("9"))
    assert newer(versioned("10"), versioned("10"))
    assert not newer(versioned("9"), versioned("10"))
    # Not numbers (another storage): taken, a conflict then corrects a stale copy.
    assert newer(versioned("b"), versioned("a"))


# --- the status writer reads from memory -------------------------------------------------


class RecordingKube:
    """The API server's answers for one campaign and its Deployment; counts the requests."""

    def __init__(self) -> None:
        self.campaign: dict[str, Any] = {
            "apiVersion": "labelops.dev/v1alpha1",
            "kind": "LabelingCampaign",
            "metadata": {"namespace": "ns", "name": "c", "uid": "u", "generation": 1,
                         "resourceVersion": "1"},
            "spec": {"paused": False},
        }  # fmt: skip
        self.deployment: dict[str, Any] | None = None
        self.requests: list[str] = []

    async def get(
        self, api_version: str, kind: str, namespace: str, name: str, cached: bool = False
    ) -> dict[str, Any] | None:
        self.requests.append(f"GET {kind}")
        return copy.deepcopy(self.deployment)

    async def get_campaign(
        self, namespace: str, name: str, cached: bool = False
    ) -> dict[str, Any] | None:
        self.requests.append("GET campaign" + (" (cache)" if cached else ""))
        return copy.deepcopy(self.campaign)

    async def patch_campaign_status(
        self, namespace: str, name: str, status: dict[str, Any], resource_version: str
    ) -> dict[str, Any]:
        self.requests.append("PATCH status")
        if resource_version != self.campaign["metadata"]["resourceVersion"]:
            raise Conflict("stale")
        self.campaign["status"] = status
        self.campaign["metadata"]["resourceVersion"] = str(int(resource_version) + 1)
        return copy.deepcopy(self.campaign)

    def someone_else_writes(self) -> None:
        version = int(self.campaign["metadata"]["resourceVersion"])
        self.campaign["metadata"]["resourceVersion"] = str(version + 1)


def quiet_writer(kube: RecordingKube) -> StatusWriter:
    return StatusWriter(kube, lambda *_: None)  # type: ignore[arg-type]


def deployment(available: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"namespace": "ns", "name": "c-worker", "generation": 1,
                     "resourceVersion": str(100 + available)},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                   "availableReplicas": available},
    }  # fmt: skip


def test_only_the_first_write_reads_the_campaign_later_ones_only_patch() -> None:
    kube = RecordingKube()
    writer = quiet_writer(kube)
    not_yet = tuple(v for v in HEALTHY if v.type != WORKERS_READY)
    asyncio.run(writer.write("ns", "c", StatusUpdate((*not_yet, ROLLING), 1)))
    assert kube.requests == ["GET campaign", "PATCH status"]
    kube.requests.clear()
    asyncio.run(writer.write("ns", "c", StatusUpdate(HEALTHY, 1)))
    assert kube.requests == ["PATCH status"]
    kube.requests.clear()
    asyncio.run(writer.write("ns", "c", StatusUpdate(HEALTHY, 1)))
    assert kube.requests == [], "nothing changed: no request at all"


def test_a_write_from_a_copy_someone_else_moved_past_rereads_and_lands() -> None:
    kube = RecordingKube()
    writer = quiet_writer(kube)
    asyncio.run(writer.write("ns", "c", StatusUpdate()))
    kube.someone_else_writes()  # not seen by a watch event yet
    kube.requests.clear()
    asyncio.run(writer.write("ns", "c", StatusUpdate(HEALTHY, 1)))
    assert kube.requests == ["PATCH status", "GET campaign", "PATCH status"]
    assert kube.campaign["status"]["observedGeneration"] == 1


def test_a_watch_event_newer_than_the_own_patch_is_what_the_next_write_starts_from() -> None:
    kube = RecordingKube()
    writer = quiet_writer(kube)
    asyncio.run(writer.write("ns", "c", StatusUpdate()))
    kube.someone_else_writes()
    writer.seen_campaign(copy.deepcopy(kube.campaign))  # the watch delivers it
    stale = copy.deepcopy(kube.campaign)
    stale["metadata"]["resourceVersion"] = "1"
    writer.seen_campaign(stale)  # an older event arriving late changes nothing
    kube.requests.clear()
    asyncio.run(writer.write("ns", "c", StatusUpdate(HEALTHY, 1)))
    assert kube.requests == ["PATCH status"]


def test_workers_ready_comes_from_the_deployment_the_watch_delivered() -> None:
    kube = RecordingKube()
    writer = quiet_writer(kube)
    not_yet = tuple(v for v in HEALTHY if v.type != WORKERS_READY)
    asyncio.run(writer.write("ns", "c", StatusUpdate(not_yet, 1)))
    writer.seen_deployment(deployment(0))
    kube.requests.clear()
    asyncio.run(writer.write("ns", "c", StatusUpdate(workers_deployment="c-worker")))
    assert kube.requests == ["PATCH status"]
    assert kube.campaign["status"]["conditions"][0]["status"] == "False"  # Ready
    writer.seen_deployment(deployment(1))
    asyncio.run(writer.write("ns", "c", StatusUpdate(workers_deployment="c-worker")))
    ready = next(c for c in kube.campaign["status"]["conditions"] if c["type"] == READY)
    assert ready["status"] == "True"
    writer.seen_deployment(deployment(1), deleted=True)
    kube.requests.clear()
    asyncio.run(writer.write("ns", "c", StatusUpdate(workers_deployment="c-worker")))
    assert kube.requests[0] == "GET Deployment", "forgotten once deleted: read again"


# --- the Kubernetes client: unchanged applies inside reusing() ---------------------------


def test_reusable_only_when_recent_and_the_same_apply() -> None:
    known = Known.of(100.0, "abc", {"kind": "ConfigMap"})
    assert reusable(known, 100.0 + REAPPLY_SECONDS - 1, "abc")
    assert not reusable(known, 100.0 + REAPPLY_SECONDS, "abc")
    assert not reusable(known, 101.0, "other")
    assert reusable(known, 101.0)  # a read
    assert not reusable(None, 101.0)


def test_fingerprint_follows_content_and_manager_not_key_order() -> None:
    a = {"kind": "ConfigMap", "data": {"x": "1", "y": "2"}}
    b = {"data": {"y": "2", "x": "1"}, "kind": "ConfigMap"}
    assert fingerprint(a, "labelops") == fingerprint(b, "labelops")
    assert fingerprint(a, "labelops") != fingerprint(a, "other")
    assert fingerprint(a, "labelops") != fingerprint({**a, "data": {"x": "2"}}, "labelops")


class RecordingClient(KubeClient):
    """KubeClient whose HTTP layer answers from a dict of objects and records each call."""

    def __init__(self) -> None:
        super().__init__(k8s.ApiClient(k8s.Configuration()))
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        self.calls.append(f"{method} {path.rsplit('/', 2)[-2]}")
        if method == "GET":
            return copy.deepcopy(self.objects.get(path))
        if method == "DELETE":
            return self.objects.pop(path, None)
        stored = copy.deepcopy(body)
        stored["metadata"]["generation"] = 1
        self.objects[path] = stored
        return copy.deepcopy(stored)


def config_map(value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"namespace": "ns", "name": "c-config"},
        "data": {"worker.json": value},
    }


async def _resync_applies(kube: RecordingClient, value: str) -> None:
    with reusing():
        await kube.apply(config_map(value))


def test_inside_reusing_an_unchanged_apply_is_not_sent_a_changed_one_is() -> None:
    kube = RecordingClient()
    asyncio.run(kube.apply(config_map("1")))
    asyncio.run(_resync_applies(kube, "1"))
    assert kube.calls == ["PATCH configmaps"]
    asyncio.run(_resync_applies(kube, "2"))
    assert kube.calls == ["PATCH configmaps"] * 2
    asyncio.run(kube.apply(config_map("2")))  # outside reusing(): always sent
    assert kube.calls == ["PATCH configmaps"] * 3


def test_an_apply_older_than_reapply_seconds_is_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = RecordingClient()
    asyncio.run(kube.apply(config_map("1")))
    later = kube_module.time.monotonic() + REAPPLY_SECONDS
    monkeypatch.setattr(kube_module.time, "monotonic", lambda: later)
    asyncio.run(_resync_applies(kube, "1"))
    assert kube.calls == ["PATCH configmaps"] * 2


def test_reads_of_our_objects_inside_reusing_come_from_what_was_learned() -> None:
    kube = RecordingClient()

    async def life() -> list[Any]:
        seen = [await kube.get("v1", "ResourceQuota", "ns", "c-quota", ours=True)]
        with reusing():
            seen.append(await kube.get("v1", "ResourceQuota", "ns", "c-quota", ours=True))
            # someone else's Secret (the labelers' tokens) is always read
            seen.append(await kube.get("v1", "Secret", "ns", "c-labelers"))
            seen.append(await kube.get("v1", "Secret", "ns", "c-labelers"))
        await kube.apply(database_secret())
        with reusing():
            seen.append(await kube.get("v1", "Secret", "ns", "c-db", ours=True))
        return seen

    seen = asyncio.run(life())
    assert seen[:4] == [None, None, None, None]
    assert seen[4] is not None and seen[4]["data"] == {"password": "cGFzcw=="}
    assert kube.calls == ["GET resourcequotas", "GET secrets", "GET secrets", "PATCH secrets"]


def database_secret() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": "ns", "name": "c-db", "managedFields": [{"manager": "x"}],
                     "ownerReferences": [{"uid": "u"}]},
        "data": {"password": "cGFzcw=="},
    }  # fmt: skip


def test_what_is_kept_of_an_applied_object_is_slim() -> None:
    kept = slim(database_secret())
    assert kept["metadata"] == {
        "namespace": "ns",
        "name": "c-db",
        "ownerReferences": [{"uid": "u"}],
    }
    assert kept["data"] == {"password": "cGFzcw=="}
    workers = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "w", "namespace": "ns", "generation": 2},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "worker"}]}}},
        "status": {"availableReplicas": 3},
    }
    assert slim(workers)["spec"] == {"replicas": 3}
    assert slim(workers)["status"] == {"availableReplicas": 3}
    assert "data" not in slim(config_map("1"))


def test_a_spec_changed_by_someone_else_or_a_delete_makes_the_next_apply_go_out() -> None:
    kube = RecordingClient()
    asyncio.run(kube.apply(config_map("1")))
    edited = copy.deepcopy(config_map("1"))
    edited["metadata"]["generation"] = 2
    kube.observed(edited)  # a watch saw a new generation: not our apply any more
    asyncio.run(_resync_applies(kube, "1"))
    assert kube.calls == ["PATCH configmaps"] * 2
    kube.observed({**config_map("1"), "metadata": {**edited["metadata"], "generation": 1}})
    asyncio.run(_resync_applies(kube, "1"))
    assert kube.calls == ["PATCH configmaps"] * 2, "same generation as applied: still ours"
    kube.forget("v1", "ConfigMap", "ns", "c-config")
    asyncio.run(_resync_applies(kube, "1"))
    assert kube.calls == ["PATCH configmaps"] * 3


# --- what a pass may assume about its campaign's past -------------------------------------


@pytest.mark.parametrize(
    ("observed", "created", "retry", "never", "new"),
    [
        (None, True, 0, True, True),  # the create handler's first attempt
        (None, True, 1, True, False),  # its retry: an earlier attempt may have stored Secrets
        (None, False, 0, True, False),  # update or resume before any pass finished
        (3, False, 0, False, False),  # a resync of a provisioned campaign
        (3, True, 0, False, False),
    ],
)
def test_a_pass_assumes_no_children_only_before_any_pass_finished(
    observed: int | None, created: bool, retry: int, never: bool, new: bool
) -> None:
    async def begin() -> tuple[bool, bool]:
        pass_scope.begin(observed, created, retry)
        return pass_scope.never_provisioned(), pass_scope.just_created()

    assert asyncio.run(begin()) == (never, new)


def test_every_step_of_a_new_rollout_reads_the_same_so_is_written_once() -> None:
    from labelops.operator.rollout import workers_verdict

    base = {"metadata": {"name": "w", "generation": 1}, "spec": {"replicas": 1}}
    steps = [
        {},  # created, not observed yet
        {"observedGeneration": 1},
        {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1},
        {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "unavailableReplicas": 1},
    ]
    verdicts = {workers_verdict({**base, "status": status}) for status in steps}
    assert verdicts == {
        Verdict.false(WORKERS_READY, Reason.ROLLING_OUT, "rolling out: 0/1 workers available")
    }
    done = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    assert workers_verdict({**base, "status": done}).status.value == "True"


def test_an_object_assumed_missing_is_not_read_inside_reusing_but_is_outside() -> None:
    kube = RecordingClient()
    kube.assume_missing("v1", "ResourceQuota", "ns", "c-quota")

    async def reads() -> None:
        with reusing():
            assert await kube.get("v1", "ResourceQuota", "ns", "c-quota", ours=True) is None
        assert await kube.get("v1", "ResourceQuota", "ns", "c-quota", ours=True) is None

    asyncio.run(reads())
    assert kube.calls == ["GET resourcequotas"]
