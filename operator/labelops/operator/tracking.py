"""Keeping status true between reconciles: progress, status.model, status.quality and the
ModelTrusted condition from the campaign's schema (O(1) reads), an Event per newly blocked
labeler, and worker readiness from its Deployment."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from labelops.api.campaign import CampaignSpec, CampaignStatus
from labelops.api.naming import CampaignNames
from labelops.clients.errors import BackendUnavailable
from labelops.operator.blocks import BLOCKED_REASON, block_message
from labelops.operator.conditions import TARGET_MET, is_true
from labelops.operator.context import OperatorContext
from labelops.operator.metrics import PROGRESS_READS
from labelops.operator.plan import CampaignRef
from labelops.operator.progress_math import target_met
from labelops.operator.reading_changes import reading_changes
from labelops.operator.reconcile import reconcile
from labelops.operator.status_writer import StatusUpdate, now_utc

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
    spec = CampaignSpec.model_validate(body["spec"])
    changes = reading_changes(tracker, status, spec, ref.generation, reading, now)
    if changes:
        await ctx.status.write(
            ref.namespace,
            ref.name,
            StatusUpdate(
                fields=changes.fields, verdicts=changes.verdicts, drop_conditions=changes.drop
            ),
        )
        if "progress" in changes.fields:
            tracker.last_written = now
    for block in reading.new_blocks:
        ctx.status.event(body, "Warning", BLOCKED_REASON, block_message(block))
    tracker.blocks.advance(reading.new_blocks)
    if target_met(reading.counts, spec.target) != is_true(status.conditions, TARGET_MET):
        # Completed (or a raised target re-opened it): a full pass sets TargetMet and
        # scales the workers, with the same code that handles spec changes.
        await reconcile(ctx, body)


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
        name = deployment["metadata"]["name"]
        if not ctx.status.workers_unchanged(namespace, campaign, name):
            await ctx.status.write(namespace, campaign, StatusUpdate(workers_deployment=name))
        return
    # Deleted by hand (the garbage collector only deletes it after the campaign is gone):
    # put it back now rather than at the next resync.
    body = await ctx.status.campaign(namespace, campaign)
    if body is not None and not _being_deleted(body):
        await reconcile(ctx, body)
