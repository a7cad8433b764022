"""What happens to a campaign's data when the campaign is deleted.

Retain (the default) keeps the topics, schema and role: labels are valuable, and dropping
them must be a deliberate choice. Delete drops them. Either way the campaign's Kafka users and
ACLs are deleted: Retain keeps data, not access. Either way the outcome is an Event.
If a backend is unreachable, the finalizer stays, the failing component's condition says
why, and the deletion is retried with backoff.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from labelops.api.campaign import CampaignSpec, ReclaimPolicy
from labelops.clients.errors import BackendUnavailable, KafkaUnavailable
from labelops.operator.conditions import SCHEMA_READY, TOPICS_READY, Reason, Verdict
from labelops.operator.context import OperatorContext
from labelops.operator.kafka_users import remove_kafka_access
from labelops.operator.plan import CampaignRef
from labelops.operator.reconcile import backoff
from labelops.operator.status_writer import StatusUpdate, post_event


def _policy(body: Mapping[str, Any]) -> ReclaimPolicy:
    try:
        return CampaignSpec.model_validate(body.get("spec") or {}).reclaim_policy
    except ValidationError:
        # Unreadable spec: never destroy data on a guess.
        return ReclaimPolicy.RETAIN


async def reclaim(ctx: OperatorContext, body: Mapping[str, Any], retry: int) -> None:
    ref = CampaignRef.from_body(body)
    names = ref.names
    topics = [names.items_topic, names.labels_topic, names.predictions_topic]
    if _policy(body) is ReclaimPolicy.RETAIN:
        # Retain keeps the data, not the access to it.
        try:
            revoked = await remove_kafka_access(ctx, ref)
        except KafkaUnavailable as err:
            message = f"revoking the campaign's Kafka access is blocked: {err}"
            await ctx.status.write(
                ref.namespace,
                ref.name,
                StatusUpdate(
                    verdicts=(Verdict.unknown(TOPICS_READY, Reason.KAFKA_UNAVAILABLE, message),)
                ),
            )
            raise kopf.TemporaryError(message, delay=backoff(retry)) from err
        post_event(
            body,
            "Normal",
            "Retained",
            f"reclaimPolicy Retain: kept topics {', '.join(topics)}, schema {names.schema} "
            f"and role {names.role}; drop them by hand when the labels are no longer needed"
            + (f"; revoked {', '.join(revoked)}" if revoked else ""),
        )
        ctx.forget(ref)
        return

    async with ctx.lock(ref), ctx.passes:
        step = TOPICS_READY
        try:
            # Workers first, so they stop consuming and release their database sessions.
            await ctx.kube.delete("apps/v1", "Deployment", ref.namespace, names.worker)
            revoked = await remove_kafka_access(ctx, ref)
            deleted_topics = await ctx.kafka.delete(topics)
            step = SCHEMA_READY
            dropped = await ctx.postgres.drop(names.role, names.schema)
        except BackendUnavailable as err:
            reason = (
                Reason.KAFKA_UNAVAILABLE
                if isinstance(err, KafkaUnavailable)
                else Reason.POSTGRES_UNAVAILABLE
            )
            message = f"deleting the campaign (reclaimPolicy Delete) is blocked: {err}"
            await ctx.status.write(
                ref.namespace,
                ref.name,
                StatusUpdate(verdicts=(Verdict.unknown(step, reason, message),)),
            )
            raise kopf.TemporaryError(message, delay=backoff(retry)) from err
    gone = [f"topic {t}" for t in deleted_topics] + dropped + revoked
    post_event(
        body,
        "Normal",
        "Reclaimed",
        "reclaimPolicy Delete: deleted " + (", ".join(gone) if gone else "nothing (already gone)"),
    )
    ctx.forget(ref)
