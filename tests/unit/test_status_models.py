"""status.model, status.quality, ModelTrusted and the block watermark: pure decisions."""

from __future__ import annotations

import datetime as dt
import math

from labelops.api.campaign import (
    MODEL_TRUSTED,
    CampaignSpec,
    CampaignStatus,
    ConditionStatus,
)
from labelops.operator.blocks import RESTART_MARGIN, BlockWatermark, block_message
from labelops.operator.conditions import Reason, Verdict, transitions
from labelops.operator.model_quality import (
    build_model_status,
    build_quality_status,
    machine_share,
    model_trusted_verdict,
    percent_text,
)
from labelops.operator.reading_changes import summary_changes, trust_changes
from labelops.operator.status_writer import StatusUpdate, render_status
from labelops.store.progress import ProgressCounts
from labelops.store.summaries import BlockRow, CampaignReading, ModelVersionRow, QualityRow

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def spec(model: dict | None = None, quality: dict | None = None) -> CampaignSpec:
    document: dict = {
        "task": {"type": "classification", "instructions": "spam?", "choices": ["ham", "spam"]},
        "target": {"items": 100, "labelsPerItem": 2},
        "labelers": {"tokenSecretRef": {"name": "tokens"}},
    }
    if model is not None:
        document["model"] = model
    if quality is not None:
        document["quality"] = quality
    return CampaignSpec.model_validate(document)


AUTO = spec({"autoAccept": {"targetAccuracy": 0.95, "confidenceLevel": 0.95}})


def version(**changes: object) -> ModelVersionRow:
    row = ModelVersionRow(
        version="v2",
        first_seen_at=T0,
        threshold=0.8731,
        trusted=True,
        braked=False,
        audits=80,
        audits_correct=79,
        lower_bound=0.9512,
        message="threshold 0.8731 proven",
    )
    return ModelVersionRow(**{**row.__dict__, **changes})


COUNTS = ProgressCounts(
    items_total=100,
    items_completed=40,
    labels=55,
    human_labeled=40,
    machine_labeled=15,
    scored_by_people=20,
    disputed=3,
    gold_answers=12,
    gold_items=10,
)


def test_machine_share_is_of_completed_items_for_the_printer_column() -> None:
    assert machine_share(COUNTS) == 15 / 40
    assert percent_text(machine_share(COUNTS)) == "38%"
    assert machine_share(ProgressCounts()) is None
    assert percent_text(None) == "0%"


def test_model_status_shows_the_latest_version_and_its_figures() -> None:
    status = build_model_status(AUTO, COUNTS, version())
    assert status is not None
    assert (status.version, status.threshold, status.audits) == ("v2", 0.8731, 80)
    assert status.audit_accuracy == round(79 / 80, 4)
    assert status.audit_lower_bound == 0.9512
    assert (status.auto_accepted, status.routed_to_people) == (15, 20)
    assert status.trusted and status.machine_share == "38%"


def test_without_a_threshold_the_bound_is_clopper_pearson_over_all_audits() -> None:
    # 59 of 59: the smallest sample proving 95% at 95%; exact bound 0.05 ** (1 / 59).
    row = version(threshold=None, trusted=False, lower_bound=None, audits=59, audits_correct=59)
    status = build_model_status(AUTO, COUNTS, row)
    assert status is not None and status.threshold is None and not status.trusted
    assert status.audit_lower_bound == round(0.05 ** (1 / 59), 4) == 0.9505


def test_a_braked_version_is_never_shown_trusted() -> None:
    status = build_model_status(AUTO, COUNTS, version(braked=True))
    assert status is not None and not status.trusted


def test_no_model_status_for_a_campaign_without_models() -> None:
    assert build_model_status(spec(), ProgressCounts(), None) is None
    waiting = build_model_status(AUTO, ProgressCounts(), None)
    assert waiting is not None and waiting.version is None and waiting.machine_share == "0%"


def wilson_reference(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson (1927) score interval, written out from the formula."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_quality_status_has_gold_accuracy_with_the_wilson_interval() -> None:
    row = QualityRow(
        alpha=0.71234, alpha_level="nominal", gold_answers=50, gold_correct=45, labelers_blocked=2
    )
    status = build_quality_status(COUNTS, row)
    low, high = wilson_reference(45, 50)
    assert status.gold_accuracy == 0.9
    assert status.gold_accuracy_low == round(low, 4) == 0.7864
    assert status.gold_accuracy_high == round(high, 4) == 0.9565
    assert (status.alpha, status.alpha_level) == (0.7123, "nominal")
    assert (status.labelers_blocked, status.disputed_items, status.consolidated_items) == (
        2,
        3,
        40,
    )


def test_quality_without_gold_answers_has_no_accuracy() -> None:
    row = QualityRow(None, None, 0, 0, 0)
    status = build_quality_status(COUNTS, row)
    assert status.gold_accuracy is None and status.gold_accuracy_low is None
    assert status.gold_answers == 0


def test_model_trusted_only_with_auto_accept() -> None:
    assert model_trusted_verdict(spec(), version()) is None
    assert model_trusted_verdict(spec({"order": "uncertainty"}), version()) is None


def test_model_trusted_true_false_and_braked_carry_the_figures() -> None:
    trusted = model_trusted_verdict(AUTO, version())
    assert trusted is not None and trusted.status is ConditionStatus.TRUE
    assert trusted.reason == Reason.TRUSTED
    for figure in ("version v2", "threshold 0.8731", "80 audits", "0.9875", "0.9512", "0.95"):
        assert figure in trusted.message

    calibrating = model_trusted_verdict(
        AUTO, version(trusted=False, threshold=None, lower_bound=None, message="need 59")
    )
    assert calibrating is not None and calibrating.status is ConditionStatus.FALSE
    assert calibrating.reason == Reason.CALIBRATING
    assert "threshold none yet" in calibrating.message and calibrating.message.endswith("need 59")

    braked = model_trusted_verdict(AUTO, version(trusted=False, braked=True, message="drift"))
    assert braked is not None and braked.status is ConditionStatus.FALSE
    assert braked.reason == Reason.BRAKED and "drift" in braked.message

    nothing = model_trusted_verdict(AUTO, None)
    assert nothing is not None and nothing.reason == Reason.NO_MODEL_VERSION


def status_with(verdict: Verdict) -> CampaignStatus:
    rendered, _ = render_status({}, 1, False, StatusUpdate(verdicts=(verdict,)), T0)
    assert rendered is not None
    return CampaignStatus.model_validate(rendered)


def test_a_brake_is_a_warning_event_and_trust_a_normal_one() -> None:
    before = status_with(Verdict.true(MODEL_TRUSTED, Reason.TRUSTED, "ok"))
    after = status_with(Verdict.false(MODEL_TRUSTED, Reason.BRAKED, "drift"))
    [change] = [t for t in transitions(before.conditions, after.conditions)]
    assert change.warning and change.event_reason == "Braked"
    [back] = transitions(after.conditions, before.conditions)
    assert not back.warning


def reading(model: ModelVersionRow | None = None) -> CampaignReading:
    return CampaignReading(counts=COUNTS, model=model, quality=None, new_blocks=[])


def test_trust_is_written_only_when_it_changes_and_dropped_without_auto_accept() -> None:
    verdict = model_trusted_verdict(AUTO, version())
    assert verdict is not None
    status = status_with(verdict)
    assert trust_changes(status, AUTO, 1, reading(version())) == ((), ())
    # a new generation restamps the condition
    assert trust_changes(status, AUTO, 2, reading(version()))[0] == (verdict,)
    assert trust_changes(status, spec(), 1, reading(version())) == ((), (MODEL_TRUSTED,))
    rendered, _ = render_status(
        status.model_dump(mode="json", by_alias=True, exclude_none=True),
        1,
        False,
        StatusUpdate(drop_conditions=(MODEL_TRUSTED,)),
        T0,
    )
    assert rendered is not None
    assert MODEL_TRUSTED not in {c["type"] for c in rendered["conditions"]}


def test_summaries_are_written_only_when_they_change() -> None:
    changes = summary_changes(CampaignStatus(), AUTO, reading(version()))
    assert set(changes) == {"model", "quality"}
    written = CampaignStatus(model=changes["model"], quality=changes["quality"])
    assert summary_changes(written, AUTO, reading(version())) == {}
    moved = summary_changes(written, AUTO, reading(version(audits=81, audits_correct=80)))
    assert set(moved) == {"model"}


def block(labeler: str, seconds: float) -> BlockRow:
    return BlockRow(labeler, T0 + dt.timedelta(seconds=seconds), "gold accuracy 0.40")


def test_block_watermark_reads_each_block_once_and_restarts_with_a_margin() -> None:
    fresh = BlockWatermark()
    assert fresh.since(None) is None, "a campaign never read: from the beginning"
    fresh.advance([block("ann", 1), block("bob", 1)])
    assert fresh.since(None) == (T0 + dt.timedelta(seconds=1), "bob")
    fresh.advance([])
    assert fresh.since(None) == (T0 + dt.timedelta(seconds=1), "bob")

    restarted = BlockWatermark()
    assert restarted.since(T0) == (T0 - RESTART_MARGIN, "")
    assert restarted.since(T0 + dt.timedelta(hours=1)) == (T0 - RESTART_MARGIN, "")


def test_block_event_names_the_labeler_and_the_reason() -> None:
    text = block_message(block("mallory", 0))
    assert "mallory" in text and "gold accuracy 0.40" in text
