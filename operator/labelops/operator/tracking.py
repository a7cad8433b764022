"""Keeping status true between reconciles: progress, status.model, status.quality and the
ModelTrusted condition from the campaign's schema (O(1) reads), an Event per newly blocked
labeler, and worker readiness from its Deployment."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from labelops.api.campaign import MODEL_TRUSTED, CampaignSpec, CampaignStatus
from labelops.api.naming import CampaignNames
from labelops.clients.errors import BackendUnavailable
from labelops.operator.blocks import BLOCKED_REASON, block_message
from labelops.operator.conditions import TARGET_MET, Verdict, find, is_true
from labelops.operator.context import OperatorContext
from labelops.operator.metrics import PROGRESS_READS
from labelops.operator.model_quality import (
    build_model_status,
    build_quality_status,
    model_trusted_verdict,
)
from labelops.operator.plan import CampaignRef
from labelops.operator.progress_math import (
    build_counters,
    build_progress,
    counts_labels_exactly,
    should_write,
    target_met,
)
from labelops.operator.reconcile import reconcile
from labelops.operator.status_writer import StatusUpdate, now_utc
from labelops.store.summaries import CampaignReading

log = logging.getLogger(__name__)


def _being_deleted(body: Mapping[str, Any]) -> bool:
    return bool(body.get("metadata", {}).get("deletionTimestamp"))


async def track_progress(ctx: OperatorContext, body: Mapping[str, Any]) -> None:
    """Read one campaign's progress and write what changed. The progress loop calls it for a
    campaign it found due, with its schema ready and not being deleted (progress_loop.py)."""
    ref = CampaignRef.from_body(body)
    tracker = ctx.tracker(ref)
    now = now_utc()
    status = CampaignStatus.model_validate(body.get("status") or {})
    try:
        reading = await ctx.postgres.read_campaign(
            ref.names.schema, tracker.blocks.since(status.last_progress_at)
        )
    except BackendUnavailable as err:
        # The next reconcile reports it in conditions; a timer only logs.
        log.warning("%s: progress not read: %s", ref.names.key, err)
        return
    PROGRESS_READS.inc()
    if reading is None:
        return
    counts = reading.counts
    spec = CampaignSpec.model_validate(body["spec"])
    tracker.schedule.record(
        now,
        (counts, reading.model, reading.quality),
        completed=target_met(counts, spec.target),
        generation=ref.generation,
    )
    tracker.window.add(now, counts.labels)
    progress = build_progress(
        counts,
        spec.target,
        tracker.window.per_hour(),
        status.progress,
        now,
        exact_labels=counts_labels_exactly(spec),
    )
    counters = build_counters(counts)
    fields: dict[str, Any] = {}
    if should_write(
        status.progress, status.counters, progress, counters, tracker.last_written, now
    ):
        fields.update(progress=progress, counters=counters, last_progress_at=now)
    fields.update(summary_changes(status, spec, reading))
    verdicts, drop = trust_changes(status, spec, ref.generation, reading)
    if fields or verdicts or drop:
        await ctx.status.write(
            ref.namespace,
            ref.name,
            StatusUpdate(fields=fields, verdicts=verdicts, drop_conditions=drop),
        )
        if "progress" in fields:
            tracker.last_written = now
    for block in reading.new_blocks:
        ctx.status.event(body, "Warning", BLOCKED_REASON, block_message(block))
    tracker.blocks.advance(reading.new_blocks)
    if target_met(counts, spec.target) != is_true(status.conditions, TARGET_MET):
        # Completed (or a raised target re-opened it): a full pass sets TargetMet and
        # scales the workers, with the same code that handles spec changes.
        await reconcile(ctx, body)


def summary_changes(
    status: CampaignStatus, spec: CampaignSpec, reading: CampaignReading
) -> dict[str, Any]:
    """status.model and status.quality, only those that differ from what is written."""
    changes: dict[str, Any] = {}
    model = build_model_status(spec, reading.counts, reading.model)
    if model != status.model:
        changes["model"] = model
    quality = build_quality_status(reading.counts, reading.quality)
    if quality != status.quality:
        changes["quality"] = quality
    return changes


def trust_changes(
    status: CampaignStatus, spec: CampaignSpec, generation: int, reading: CampaignReading
) -> tuple[tuple[Verdict, ...], tuple[str, ...]]:
    """The ModelTrusted verdict when it differs from the written condition; or the
    condition to drop once the campaign has no model.autoAccept any more."""
    verdict = model_trusted_verdict(spec, reading.model)
    current = find(status.conditions, MODEL_TRUSTED)
    if verdict is None:
        return (), ((MODEL_TRUSTED,) if current is not None else ())
    if current is not None and (
        current.status,
        current.reason,
        current.message,
        current.observed_generation,
    ) == (verdict.status, verdict.reason, verdict.message, generation):
        return (), ()
    return (verdict,), ()


async def deployment_changed(
    ctx: OperatorContext, deployment: Mapping[str, Any], campaign: str, deleted: bool
) -> None:
    namespace = deployment["metadata"]["namespace"]
    ctx.status.seen_deployment(deployment, deleted=deleted)
    if deleted:
        ctx.kube.forget("apps/v1", "Deployment", namespace, deployment["metadata"]["name"])
    else:
        ctx.kube.observed(deployment)
    if not deleted:
        if deployment["metadata"]["name"] != CampaignNames(namespace, campaign).worker:
            return  # the learner's Deployment: it does not decide WorkersReady
        update = StatusUpdate(workers_deployment=deployment["metadata"]["name"])
        await ctx.status.write(namespace, campaign, update)
        return
    # Deleted by hand (the garbage collector only deletes it after the campaign is gone):
    # put it back now rather than at the next resync.
    body = await ctx.status.campaign(namespace, campaign)
    if body is not None and not _being_deleted(body):
        await reconcile(ctx, body)
