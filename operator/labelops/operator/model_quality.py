"""status.model, status.quality and the ModelTrusted condition, from O(1) readings.

Pure. The worker's quality job keeps the figures in the campaign's schema (one row per
model version, one quality summary row, sharded counters); the operator's progress loop
reads them (labelops.store.summaries) and these functions say what status shows:

- status.model: the latest model version (by first seen), its proven threshold or none,
  its audits with their accuracy and the one-sided Clopper-Pearson lower bound, items
  auto-accepted and items routed to people, and the machine-labeled share of the completed
  items (the printer column).
- status.quality: Krippendorff's alpha, gold accuracy with its Wilson 95% interval,
  labelers blocked, disputed and consolidated (completed) items.
- ModelTrusted (only with model.autoAccept): True while the latest version is trusted;
  False with the figures when it is not yet proven or braked. A brake is a Warning.
"""

from __future__ import annotations

from labelops.api.campaign import (
    MODEL_TRUSTED,
    AutoAccept,
    CampaignSpec,
    ModelStatus,
    QualityStatus,
)
from labelops.operator.conditions import Reason, Verdict
from labelops.quality.intervals import clopper_pearson_lower, wilson
from labelops.store.progress import ProgressCounts
from labelops.store.summaries import ModelVersionRow, QualityRow

# Figures in status are rounded so that noise in the last digits never causes a write.
DIGITS = 4


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)


def machine_share(counts: ProgressCounts) -> float | None:
    """Share of the completed items a model labeled (each machine label completes one)."""
    if counts.items_completed <= 0:
        return None
    return min(1.0, counts.machine_labeled / counts.items_completed)


def percent_text(share: float | None) -> str:
    """'37%' for the printer column; '0%' before any item completed."""
    return f"{round(100 * share)}%" if share is not None else "0%"


def audit_lower_bound(row: ModelVersionRow, confidence_level: float) -> float | None:
    """The bound the quality job computed at the version's threshold; without a threshold
    yet, the one-sided Clopper-Pearson bound over all of the version's audits."""
    if row.lower_bound is not None:
        return row.lower_bound
    if row.audits <= 0:
        return None
    return clopper_pearson_lower(row.audits_correct, row.audits, confidence_level)


def _confidence_level(spec: CampaignSpec) -> float:
    auto = spec.model.auto_accept if spec.model is not None else None
    return auto.confidence_level if auto is not None else AutoAccept().confidence_level


def build_model_status(
    spec: CampaignSpec, counts: ProgressCounts, row: ModelVersionRow | None
) -> ModelStatus | None:
    """None for a campaign that neither configures a model nor ever received a prediction."""
    if spec.model is None and row is None and counts.machine_labeled == 0:
        return None
    share = machine_share(counts)
    status = ModelStatus(
        auto_accepted=counts.machine_labeled,
        routed_to_people=counts.scored_by_people,
        machine_share=percent_text(share),
    )
    if row is None:
        return status.model_copy(update={"message": "no model version has scored items yet"})
    return status.model_copy(
        update={
            "version": row.version,
            "threshold": _round(row.threshold),
            "audits": row.audits,
            "audit_accuracy": _round(row.accuracy),
            "audit_lower_bound": _round(audit_lower_bound(row, _confidence_level(spec))),
            "trusted": row.trusted and not row.braked,
            "message": row.message,
        }
    )


def build_quality_status(counts: ProgressCounts, row: QualityRow | None) -> QualityStatus:
    status = QualityStatus(
        disputed_items=counts.disputed, consolidated_items=counts.items_completed
    )
    if row is None:
        return status
    update: dict[str, object] = {
        "alpha": _round(row.alpha),
        "alpha_level": row.alpha_level,
        "gold_answers": row.gold_answers,
        "labelers_blocked": row.labelers_blocked,
    }
    if row.gold_answers > 0:
        correct = min(row.gold_correct, row.gold_answers)
        interval = wilson(correct, row.gold_answers, 0.95)
        update.update(
            gold_accuracy=_round(interval.point),
            gold_accuracy_low=_round(interval.low),
            gold_accuracy_high=_round(interval.high),
        )
    return status.model_copy(update=update)


def _figures(row: ModelVersionRow, auto: AutoAccept) -> str:
    threshold = f"{row.threshold:.4f}" if row.threshold is not None else "none yet"
    accuracy = f"{row.accuracy:.4f}" if row.accuracy is not None else "n/a"
    bound = audit_lower_bound(row, auto.confidence_level)
    bound_text = f"{bound:.4f}" if bound is not None else "n/a"
    text = (
        f"version {row.version}: threshold {threshold}, {row.audits} audits "
        f"({row.audits_correct} correct), accuracy {accuracy}, lower bound {bound_text} "
        f"(target {auto.target_accuracy} at confidence {auto.confidence_level})"
    )
    return f"{text}: {row.message}" if row.message else text


def model_trusted_verdict(spec: CampaignSpec, row: ModelVersionRow | None) -> Verdict | None:
    """The ModelTrusted condition; None for a campaign without model.autoAccept."""
    auto = spec.model.auto_accept if spec.model is not None else None
    if auto is None:
        return None
    if row is None:
        return Verdict.false(
            MODEL_TRUSTED,
            Reason.NO_MODEL_VERSION,
            "no model version has scored items yet; auto-accept starts when audits prove "
            f"a threshold (target {auto.target_accuracy} at confidence "
            f"{auto.confidence_level})",
        )
    if row.braked:
        return Verdict.false(MODEL_TRUSTED, Reason.BRAKED, _figures(row, auto))
    if row.trusted:
        return Verdict.true(MODEL_TRUSTED, Reason.TRUSTED, _figures(row, auto))
    return Verdict.false(MODEL_TRUSTED, Reason.CALIBRATING, _figures(row, auto))
