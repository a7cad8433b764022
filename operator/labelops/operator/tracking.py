"""Keeping status true between reconciles: progress from the campaign's schema and worker
readiness from its Deployment."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from labelops.api.campaign import CampaignSpec, CampaignStatus
from labelops.clients.errors import BackendUnavailable
from labelops.operator.conditions import SCHEMA_READY, TARGET_MET, is_true
from labelops.operator.context import OperatorContext
from labelops.operator.metrics import PROGRESS_READS
from labelops.operator.plan import CampaignRef
from labelops.operator.progress_math import (
    build_counters,
    build_progress,
    should_write,
    target_met,
)
from labelops.operator.reconcile import reconcile
from labelops.operator.status_writer import StatusUpdate, now_utc

log = logging.getLogger(__name__)


def _being_deleted(body: Mapping[str, Any]) -> bool:
    return bool(body.get("metadata", {}).get("deletionTimestamp"))


async def track_progress(ctx: OperatorContext, body: Mapping[str, Any]) -> None:
    if _being_deleted(body):
        return
    ref = CampaignRef.from_body(body)
    status = CampaignStatus.model_validate(body.get("status") or {})
    if not is_true(status.conditions, SCHEMA_READY):
        return  # nothing to read until the schema is migrated
    tracker = ctx.tracker(ref)
    now = now_utc()
    if not tracker.schedule.due(now):
        return
    try:
        counts = await ctx.postgres.read_progress(ref.names.schema)
    except BackendUnavailable as err:
        # The next reconcile reports it in conditions; a timer only logs.
        log.warning("%s: progress not read: %s", ref.names.key, err)
        return
    PROGRESS_READS.inc()
    if counts is None:
        return
    tracker.schedule.record(now, counts.labels)
    tracker.window.add(now, counts.labels)
    spec = CampaignSpec.model_validate(body["spec"])
    progress = build_progress(counts, spec.target, tracker.window.per_hour(), status.progress, now)
    counters = build_counters(counts)
    if should_write(
        status.progress, status.counters, progress, counters, tracker.last_written, now
    ):
        await ctx.status.write(
            ref.namespace,
            ref.name,
            StatusUpdate(
                fields={"progress": progress, "counters": counters, "last_progress_at": now}
            ),
        )
        tracker.last_written = now
    if target_met(counts, spec.target) != is_true(status.conditions, TARGET_MET):
        # Completed (or a raised target re-opened it): a full pass sets TargetMet and
        # scales the workers, with the same code that handles spec changes.
        await reconcile(ctx, body)


async def deployment_changed(
    ctx: OperatorContext, deployment: Mapping[str, Any], campaign: str, deleted: bool
) -> None:
    namespace = deployment["metadata"]["namespace"]
    if not deleted:
        update = StatusUpdate(workers_deployment=deployment["metadata"]["name"])
        await ctx.status.write(namespace, campaign, update)
        return
    # Deleted by hand (the garbage collector only deletes it after the campaign is gone):
    # put it back now rather than at the next resync.
    body = await ctx.kube.get_campaign(namespace, campaign)
    if body is not None and not _being_deleted(body):
        await reconcile(ctx, body)
