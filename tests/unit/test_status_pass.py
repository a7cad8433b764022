"""What a reconcile pass reports: Stalled and observedGeneration follow from its verdicts;
Kafka's side and PostgreSQL's run at once and each is reported on its own condition."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml

from labelops.api.campaign import CampaignSpec, CampaignStatus
from labelops.clients.errors import BackendUnavailable, KafkaUnavailable, PostgresUnavailable
from labelops.operator import reconcile
from labelops.operator.conditions import (
    SCHEMA_READY,
    STALLED,
    TOPICS_READY,
    WORKERS_READY,
    Reason,
    Verdict,
)
from labelops.operator.context import ProgressTracker
from labelops.operator.plan import CampaignRef, PostgresEndpoint, WorkerEnvironment
from labelops.operator.reading_changes import reading_changes
from labelops.operator.reconcile import Pass, backoff
from labelops.operator.status_writer import render_status
from labelops.store.progress import ProgressCounts
from labelops.store.summaries import CampaignReading

REF = CampaignRef("ns", "c", "uid", 7)


def stalled(update_verdicts: tuple[Verdict, ...]) -> Verdict | None:
    return next((v for v in update_verdicts if v.type == STALLED), None)


def test_a_complete_clean_pass_clears_stalled_and_advances_the_generation() -> None:
    state = Pass(REF, verdicts=[Verdict.true(TOPICS_READY, Reason.TOPICS_IN_SYNC)])
    state.complete = True
    update = state.update()
    found = stalled(update.verdicts)
    assert found is not None and found.status.value == "False"
    assert update.observed_generation == 7


def test_a_component_needing_a_person_stalls_the_campaign() -> None:
    refusal = Verdict.false(TOPICS_READY, Reason.NOT_SUPPORTED, "kafka.partitions: 3 < 6")
    state = Pass(REF, verdicts=[refusal])
    state.complete = True
    found = stalled(state.update().verdicts)
    assert found is not None
    assert (found.status.value, found.reason, found.message) == (
        "True",
        "NotSupported",
        "kafka.partitions: 3 < 6",
    )


def test_a_spec_problem_stalls_directly() -> None:
    state = Pass(REF)
    state.stall(Reason.INVALID_SPEC, "/spec/task/labelSchema: 12 is not valid")
    update = state.update()
    assert [v.type for v in update.verdicts] == [STALLED]
    assert update.observed_generation == 7


def test_an_interrupted_pass_neither_judges_stalled_nor_advances_the_generation() -> None:
    down = Verdict.unknown(TOPICS_READY, Reason.KAFKA_UNAVAILABLE, "unreachable")
    update = Pass(REF, verdicts=[down]).update()
    assert stalled(update.verdicts) is None
    assert update.observed_generation is None


def test_workers_readiness_is_left_to_the_live_deployment() -> None:
    state = Pass(REF, workers_deployment="c-worker")
    state.complete = True
    update = state.update()
    assert update.workers_deployment == "c-worker"
    assert all(v.type != WORKERS_READY for v in update.verdicts)


def test_backoff_grows_to_half_a_minute() -> None:
    assert [backoff(r) for r in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


# --- Kafka's side and PostgreSQL's, run at once ---------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "helpfulness-pairwise.yaml"
ENV = WorkerEnvironment(
    default_image="registry.local/labelops:1.2.3",
    kafka_bootstrap="kafka.svc:9092",
    postgres=PostgresEndpoint("pg.svc", 5432, "labels"),
)
TOPICS_OK = Verdict.true(TOPICS_READY, Reason.TOPICS_IN_SYNC, "topics ok")
SCHEMA_OK = Verdict.true(SCHEMA_READY, Reason.SCHEMA_MIGRATED, "schema ok")


def campaign_body() -> dict[str, Any]:
    documents = list(yaml.safe_load_all(EXAMPLE.read_text()))
    return next(d for d in documents if d["kind"] == "LabelingCampaign")


def run_first_steps(
    monkeypatch: pytest.MonkeyPatch,
    kafka_side: Callable[[], Awaitable[Verdict]],
    database_side: Callable[[], Awaitable[tuple[Verdict, str]]],
) -> tuple[Pass, BaseException]:
    """_run up to its first backend failure (both sides given here; nothing else is)."""
    monkeypatch.setattr(reconcile, "_converge_kafka", lambda *_: kafka_side())
    monkeypatch.setattr(reconcile, "_converge_schema", lambda *_: database_side())
    state = Pass(REF)
    ctx = cast(Any, SimpleNamespace(workers=ENV))
    with pytest.raises(BackendUnavailable) as raised:
        asyncio.run(asyncio.wait_for(reconcile._run(ctx, campaign_body(), state), 5))
    return state, raised.value


def test_kafka_down_is_reported_on_topics_and_the_migrated_schema_still_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def kafka() -> Verdict:
        raise KafkaUnavailable("no broker answered")

    async def database() -> tuple[Verdict, str]:
        return SCHEMA_OK, "postgresql://w@pg/labels"

    state, err = run_first_steps(monkeypatch, kafka, database)
    assert isinstance(err, KafkaUnavailable)
    assert state.step == TOPICS_READY
    assert state.verdicts == [SCHEMA_OK]


def test_postgres_down_is_reported_on_the_schema_and_the_topics_still_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def kafka() -> Verdict:
        return TOPICS_OK

    async def database() -> tuple[Verdict, str]:
        raise PostgresUnavailable("connection refused")

    state, err = run_first_steps(monkeypatch, kafka, database)
    assert isinstance(err, PostgresUnavailable)
    assert state.step == SCHEMA_READY
    assert state.verdicts == [TOPICS_OK]


def test_the_two_sides_run_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each side waits for the other to have started: one after the other, neither ends
    (wait_for's 5 s would fail the pass with a timeout, not the PostgreSQL error)."""
    started: dict[str, asyncio.Event] = {}

    def event(name: str) -> asyncio.Event:
        return started.setdefault(name, asyncio.Event())

    async def kafka() -> Verdict:
        event("kafka").set()
        await event("database").wait()
        return TOPICS_OK

    async def database() -> tuple[Verdict, str]:
        event("database").set()
        await event("kafka").wait()
        raise PostgresUnavailable("after both started")

    state, err = run_first_steps(monkeypatch, kafka, database)
    assert str(err) == "after both started"
    assert state.verdicts == [TOPICS_OK]


# --- the first progress reading goes out with the pass's own write --------------------------


class FakePostgres:
    def __init__(self, reading: CampaignReading) -> None:
        self.reading = reading
        self.calls: list[str] = []

    async def read_campaign(self, schema: str, blocks_since: object) -> CampaignReading:
        self.calls.append("read_campaign")
        return self.reading

    async def read_progress(self, schema: str) -> ProgressCounts:
        self.calls.append("read_progress")
        return self.reading.counts


def run_whole_pass(
    monkeypatch: pytest.MonkeyPatch, body: dict[str, Any], postgres: FakePostgres
) -> tuple[Pass, ProgressTracker]:
    async def kafka(*_: object) -> Verdict:
        return TOPICS_OK

    async def database(*_: object) -> tuple[Verdict, str]:
        return SCHEMA_OK, "postgresql://w@pg/labels"

    async def nothing_to_fix(*_: object) -> None:
        return None

    monkeypatch.setattr(reconcile, "_converge_kafka", kafka)
    monkeypatch.setattr(reconcile, "_converge_schema", database)
    monkeypatch.setattr(reconcile, "converge_workers", nothing_to_fix)
    monkeypatch.setattr(reconcile, "converge_learner", nothing_to_fix)
    tracker = ProgressTracker()
    ctx = cast(Any, SimpleNamespace(workers=ENV, postgres=postgres, tracker=lambda ref: tracker))
    state = Pass(CampaignRef.from_body(body))
    asyncio.run(asyncio.wait_for(reconcile._run(ctx, body, state), 5))
    return state, tracker


def named(body: dict[str, Any]) -> dict[str, Any]:
    body["metadata"].update(namespace="ns", uid="u", generation=1)
    return body


def test_a_first_pass_carries_the_first_reading_and_leaves_the_loop_nothing_to_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts = ProgressCounts(items_total=10, labels=3, human_labeled=3)
    postgres = FakePostgres(CampaignReading(counts, model=None, quality=None, new_blocks=[]))
    body = named(campaign_body())
    state, tracker = run_whole_pass(monkeypatch, body, postgres)
    assert postgres.calls == ["read_campaign"]
    progress = state.fields["progress"]
    assert (progress.items_total, progress.labels) == (10, 3)
    assert state.fields["counters"].human_labeled == 3
    assert state.read_at is not None
    # The loop's read a moment later, from the status the pass wrote: nothing to write.
    rendered, _ = render_status({}, 1, False, state.update(), state.read_at)
    written = CampaignStatus.model_validate(rendered)
    tracker.last_written = state.read_at
    spec = CampaignSpec.model_validate(body["spec"])
    later = reading_changes(tracker, written, spec, 1, postgres.reading, state.read_at)
    assert not later, later


def test_a_pass_over_a_campaign_already_read_only_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts = ProgressCounts(items_total=10, labels=3, human_labeled=3)
    postgres = FakePostgres(CampaignReading(counts, model=None, quality=None, new_blocks=[]))
    body = named(campaign_body())
    body["status"] = {"progress": {"itemsTotal": 10, "labels": 2, "summary": "2/30"}}
    state, _ = run_whole_pass(monkeypatch, body, postgres)
    assert postgres.calls == ["read_progress"]
    assert "progress" not in state.fields and state.read_at is None


def test_a_new_campaign_says_reconciling_before_it_waits_for_a_pass_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With every pass slot taken (a thousand campaigns applied at once), a new campaign
    still gets Reconciling=True at once, not a status-less wait that kstatus calls Current."""
    writes: list[object] = []
    ran: list[object] = []

    async def write(namespace: str, name: str, update: object) -> None:
        writes.append(update)

    async def never_runs(*args: object) -> None:
        ran.append(args)

    monkeypatch.setattr(reconcile, "_run", never_runs)

    async def scenario() -> None:
        lock = asyncio.Lock()
        ctx = cast(
            Any,
            SimpleNamespace(
                lock=lambda ref: lock,
                passes=asyncio.Semaphore(0),  # every slot taken
                status=SimpleNamespace(write=write),
            ),
        )
        task = asyncio.create_task(reconcile.reconcile(ctx, named(campaign_body()), created=True))
        for _ in range(100):
            if writes:
                break
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert len(writes) == 1, "no Reconciling write before the wait"
    assert ran == [], "the pass ran without a slot"
