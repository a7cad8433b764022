"""What a reconcile pass reports: Stalled and observedGeneration follow from its verdicts."""

from __future__ import annotations

from labelops.operator.conditions import STALLED, TOPICS_READY, WORKERS_READY, Reason, Verdict
from labelops.operator.plan import CampaignRef
from labelops.operator.reconcile import Pass, backoff

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
