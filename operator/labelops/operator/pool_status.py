"""A LabelerPool's status, computed from what one pool pass observed. Pure.

Per member campaign: its tier and weight, its nominal share (routing.fair_share.shares:
weight over the weights of its tier's campaigns with work), its actual share (its decayed
labels over its tier's, each label weighing exp2(-age / half-life), read from the campaign's
schema), the labelers active in it over the window and its pending items (from the
campaign's status.progress). Conditions, read like a campaign's by kstatus (Argo CD, Flux,
`kubectl wait --for=condition=Ready`): Ready, and Stalled when a person must act; plus
observedGeneration once the generation was fully judged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labelops.api.labeler_pool import LabelerPoolStatus, PoolCampaignStatus
from labelops.operator.conditions import READY, STALLED, Reason, Verdict, apply_verdicts
from labelops.operator.pool_plan import Member
from labelops.routing.fair_share import PoolCampaign, ServedHistory, shares

# The decay of actual shares: the router's (routing.fair_share.DEFAULT_HALF_LIFE_SECONDS).
HALF_LIFE_SECONDS = 600.0
# Labels older than this weigh under 1/64 and are not read; leases and labels within it make
# a labeler active.
WINDOW_SECONDS = 6 * HALF_LIFE_SECONDS


@dataclass(frozen=True)
class CampaignUsage:
    """One campaign's labels over the window: their decayed sum, and who was active."""

    decayed_labels: float = 0.0
    labelers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PoolProblem:
    """What keeps the pool from serving; permanent: a person must act."""

    reason: str
    message: str
    permanent: bool = True


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def campaign_statuses(
    joined: Sequence[Member], usage: Mapping[str, CampaignUsage]
) -> list[PoolCampaignStatus]:
    campaigns = [
        # Unknown progress (no status yet) counts as having work: it is being provisioned.
        PoolCampaign.joined(m.name, m.ref, m.pending_items is None or m.pending_items > 0)
        for m in joined
    ]
    history = ServedHistory(
        HALF_LIFE_SECONDS,
        0.0,
        {name: u.decayed_labels for name, u in usage.items() if u.decayed_labels > 0},
    )
    found = shares(campaigns, history)
    return [
        PoolCampaignStatus(
            name=m.name,
            priority=m.ref.priority,
            weight=m.ref.weight,
            nominal_share=_round(found[m.name].nominal),
            actual_share=_round(found[m.name].actual),
            labelers_active=len(usage.get(m.name, CampaignUsage()).labelers),
            pending_items=m.pending_items,
        )
        for m in joined
    ]


def verdicts(
    joined: Sequence[Member], problem: PoolProblem | None, router_ready: str | None
) -> list[Verdict]:
    """Ready and Stalled. router_ready: None when the router Deployment is available, else
    why not."""
    if problem is not None:
        return [
            Verdict.false(READY, problem.reason, problem.message),
            Verdict.true(STALLED, problem.reason, problem.message)
            if problem.permanent
            else Verdict.false(STALLED, Reason.AS_EXPECTED, "no action needed"),
        ]
    stalled = Verdict.false(STALLED, Reason.AS_EXPECTED, "no action needed")
    if not joined:
        return [
            Verdict.true(
                READY,
                Reason.NO_CAMPAIGNS,
                "no campaign of the namespace names this pool in spec.labelers.poolRef yet",
            ),
            stalled,
        ]
    if router_ready is not None:
        return [Verdict.false(READY, Reason.ROUTER_UNAVAILABLE, router_ready), stalled]
    names = ", ".join(m.name for m in joined)
    return [
        Verdict.true(READY, Reason.ROUTER_AVAILABLE, f"the router serves {names}"),
        stalled,
    ]


def router_readiness(deployment: Mapping[str, Any] | None) -> str | None:
    """None when the router Deployment's current generation has an available replica."""
    if deployment is None:
        return "the router Deployment does not exist yet"
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation")
    if status.get("observedGeneration") != generation:
        return "the router Deployment's new generation is not observed yet"
    if int(status.get("updatedReplicas") or 0) < 1 or int(status.get("availableReplicas") or 0) < 1:
        return "the router is not available yet (no ready pod of its current version)"
    return None


def pool_status(
    previous: Mapping[str, Any],
    generation: int,
    joined: Sequence[Member],
    usage: Mapping[str, CampaignUsage],
    problem: PoolProblem | None,
    router_ready: str | None,
    now: dt.datetime,
) -> dict[str, Any]:
    """The whole status (camelCase, as written); compare with the live one to patch only
    on change (lastTransitionTime moves only when a condition's status does)."""
    old = LabelerPoolStatus.model_validate(previous or {})
    active: set[str] = set()
    for name in (m.name for m in joined):
        active |= usage.get(name, CampaignUsage()).labelers
    conditions = apply_verdicts(
        old.conditions, verdicts(joined, problem, router_ready), generation, now
    )
    status = LabelerPoolStatus(
        observed_generation=generation,
        campaigns=campaign_statuses(joined, usage),
        active_labelers=len(active),
        conditions=conditions,
    )
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)
