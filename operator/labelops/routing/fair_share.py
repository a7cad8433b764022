"""The next campaign for a pool's labeler: priority tiers, then weighted fair share.

Method: weighted fair queuing on exponentially decayed usage (Kueue's fair sharing, where
the next workload goes to the ClusterQueue of lowest usage / weight; stride scheduling's
"pass", with old service forgotten). Each campaign's usage is the labels the pool has served
it, every label decaying with a half-life (the window), so the past weighs less and less.
For a claim:

1. Campaigns the labeler may not get are left out, each with its reason: blocked in it,
   lacking one of its required skills, or it has no work.
2. The highest priority tier with a campaign left wins; lower tiers wait.
3. Within the tier, the campaign whose usage / weight is lowest (the furthest behind its
   share) goes first; ties go to the higher weight, then to the name (deterministic).

Over many claims every campaign of a tier with work serves weight / (sum of the weights of
the tier's campaigns with work) of the labels: that is its nominal share. A campaign without
work is simply not a candidate, so the others absorb its share in proportion to their weights
(borrowing). Lent labels are not paid back: ServedHistory.with_rejoined lifts a returning
(or new) campaign's usage to its tier's level, so it rejoins at its share instead of taking
every label until its decayed usage catches up with the others'.

Usage is the pool's, not the labeler's: shares are kept across the whole workforce. Skills
can still skew them (a campaign only a few labelers qualify for gets what those few give).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from labelops.api.campaign import PoolRef
from labelops.api.labeler_pool import Skill
from labelops.routing.skills import skills_of

DEFAULT_HALF_LIFE_SECONDS = 600.0


@dataclass(frozen=True)
class Labeler:
    id: str
    skills: frozenset[str] = frozenset()
    blocked_in: frozenset[str] = frozenset()

    @classmethod
    def signed_in(
        cls,
        labeler_id: str,
        groups: Sequence[str],
        pool_skills: Sequence[Skill],
        blocked_in: frozenset[str] = frozenset(),
    ) -> Labeler:
        return cls(labeler_id, skills_of(labeler_id, groups, pool_skills), blocked_in)


@dataclass(frozen=True)
class PoolCampaign:
    name: str
    priority: int = 0
    weight: int = 1
    required_skills: frozenset[str] = frozenset()
    has_work: bool = True

    def __post_init__(self) -> None:
        if self.weight < 1:
            raise ValueError(
                f"campaign {self.name!r}: spec.labelers.poolRef.weight {self.weight} must be >= 1"
            )

    @classmethod
    def joined(cls, name: str, ref: PoolRef, has_work: bool) -> PoolCampaign:
        return cls(name, ref.priority, ref.weight, frozenset(ref.required_skills), has_work)

    def usage_key(self, history: ServedHistory) -> float:
        """How far ahead of its share it is: decayed labels served per unit of weight."""
        return history.usage(self.name) / self.weight


class Exclusion(StrEnum):
    BLOCKED = "Blocked"
    MISSING_SKILL = "MissingSkill"
    NO_WORK = "NoWork"
    LOWER_PRIORITY = "LowerPriority"


@dataclass(frozen=True)
class ServedHistory:
    """Labels served per campaign, exponentially decayed; all counts are as of `at`.

    Decay multiplies every count by the same factor, so only `with_served` applies it (the
    order of usage / weight does not change with time alone).
    """

    half_life: float = DEFAULT_HALF_LIFE_SECONDS
    at: float = 0.0
    counts: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.half_life > 0:
            raise ValueError(f"half_life {self.half_life} must be > 0 seconds")

    def decayed(self, now: float) -> ServedHistory:
        """The counts as of `now` (a clock going backwards decays nothing)."""
        if now <= self.at:
            return self
        factor = math.exp2(-(now - self.at) / self.half_life)
        return ServedHistory(self.half_life, now, {k: v * factor for k, v in self.counts.items()})

    def with_served(self, campaign: str, now: float, labels: int = 1) -> ServedHistory:
        current = self.decayed(now)
        counts = dict(current.counts)
        counts[campaign] = counts.get(campaign, 0.0) + labels
        return ServedHistory(current.half_life, current.at, counts)

    def usage(self, campaign: str) -> float:
        return self.counts.get(campaign, 0.0)

    def with_rejoined(
        self, campaign: PoolCampaign, campaigns: Sequence[PoolCampaign]
    ) -> ServedHistory:
        """Lift the usage of a campaign that has work again (or is new) to its tier's lowest
        usage / weight among the others with work, times its weight: what it lent while idle
        is not paid back (Kueue's borrowing), so it rejoins at its share instead of taking
        every label until its decayed usage catches up. The router calls this when a
        campaign's work reappears."""
        peers = [
            c.usage_key(self)
            for c in campaigns
            if c.priority == campaign.priority and c.has_work and c.name != campaign.name
        ]
        if not peers:
            return self
        floor = min(peers) * campaign.weight
        if self.usage(campaign.name) >= floor:
            return self
        return ServedHistory(self.half_life, self.at, {**self.counts, campaign.name: floor})


@dataclass(frozen=True)
class Decision:
    """The campaigns to try in order (the first unless its worker has nothing after all),
    and why every other one was left out."""

    order: tuple[str, ...]
    excluded: Mapping[str, Exclusion]

    @property
    def campaign(self) -> str | None:
        return self.order[0] if self.order else None


def exclusion(labeler: Labeler, campaign: PoolCampaign) -> Exclusion | None:
    if campaign.name in labeler.blocked_in:
        return Exclusion.BLOCKED
    if not campaign.required_skills <= labeler.skills:
        return Exclusion.MISSING_SKILL
    if not campaign.has_work:
        return Exclusion.NO_WORK
    return None


def route(labeler: Labeler, campaigns: Sequence[PoolCampaign], history: ServedHistory) -> Decision:
    excluded: dict[str, Exclusion] = {}
    candidates: list[PoolCampaign] = []
    for campaign in campaigns:
        reason = exclusion(labeler, campaign)
        if reason is None:
            candidates.append(campaign)
        else:
            excluded[campaign.name] = reason
    if not candidates:
        return Decision((), excluded)
    tier = max(c.priority for c in candidates)
    for campaign in candidates:
        if campaign.priority < tier:
            excluded[campaign.name] = Exclusion.LOWER_PRIORITY
    in_tier = [c for c in candidates if c.priority == tier]
    in_tier.sort(key=lambda c: (c.usage_key(history), -c.weight, c.name))
    return Decision(tuple(c.name for c in in_tier), excluded)


@dataclass(frozen=True)
class Share:
    nominal: float | None
    actual: float | None


def shares(campaigns: Sequence[PoolCampaign], history: ServedHistory) -> dict[str, Share]:
    """Per campaign, for the pool's status: its nominal share (weight over the sum of the
    weights of its tier's campaigns with work; None without work) and its actual share of
    its tier's decayed usage (None before anything was served in the tier)."""
    result: dict[str, Share] = {}
    for tier in {c.priority for c in campaigns}:
        members = [c for c in campaigns if c.priority == tier]
        weights = sum(c.weight for c in members if c.has_work)
        used = sum(history.usage(c.name) for c in members)
        for c in members:
            result[c.name] = Share(
                nominal=c.weight / weights if c.has_work else None,
                actual=history.usage(c.name) / used if used > 0 else None,
            )
    return result
