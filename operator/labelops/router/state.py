"""The router's memory of its pool, and the decisions taken from it: pure, no I/O.

What it keeps, per campaign: labels served (a decayed ServedHistory), and until when it is
believed to have no work (a worker's 204, or an unreachable worker, marks it for
NO_WORK_SECONDS; when the mark lapses the campaign rejoins at its tier's share, never
claiming back what it lent). Per labeler: the campaigns whose worker answered 403 blocked
(for BLOCKED_SECONDS, then asked again: a block can be lifted) and the leases the router
handed out, until submitted, released or past their leaseExpiresAt, which is what
capacity.maxLeasesPerLabeler counts across the whole pool.

Every method takes `now` (seconds, the wall clock of leaseExpiresAt) so tests drive time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from labelops.api.labeler_pool import Skill
from labelops.api.pool_router import RoutedCampaign, RouterConfig
from labelops.routing.fair_share import (
    DEFAULT_HALF_LIFE_SECONDS,
    Decision,
    Labeler,
    PoolCampaign,
    ServedHistory,
    Share,
    route,
    shares,
)

# A campaign whose worker just said "nothing to label" (204) or could not be reached is not
# asked again for this long: claims go elsewhere instead of paying its round trip each time.
NO_WORK_SECONDS = 1.0
# A worker's 403 for a blocked labeler is believed this long, then the campaign is tried
# again (spec.labelers.blocked may have been edited, a gold rule lifted).
BLOCKED_SECONDS = 60.0


@dataclass(frozen=True)
class CapacityFull:
    """The labeler holds capacity.maxLeasesPerLabeler leases across the pool."""

    held: int
    limit: int
    retry_after: int  # seconds until the first of them expires (>= 1)


@dataclass
class LabelerState:
    blocked_until: dict[str, float] = field(default_factory=dict)
    # (campaign, item id) -> leaseExpiresAt (seconds)
    leases: dict[tuple[str, str], float] = field(default_factory=dict)
    last_seen: float = 0.0

    def live_leases(self, now: float) -> dict[tuple[str, str], float]:
        expired = [key for key, until in self.leases.items() if until <= now]
        for key in expired:
            del self.leases[key]
        return self.leases

    def blocked_in(self, now: float) -> frozenset[str]:
        return frozenset(c for c, until in self.blocked_until.items() if until > now)


@dataclass(frozen=True)
class CampaignView:
    name: str
    priority: int
    weight: int
    served: float
    usage: float
    share: Share
    has_work: bool
    labelers_active: int


class PoolState:
    def __init__(
        self,
        config: RouterConfig,
        *,
        half_life: float = DEFAULT_HALF_LIFE_SECONDS,
        now: float = 0.0,
    ) -> None:
        self.config = config
        self.skills: Sequence[Skill] = tuple(config.skills)
        self.max_leases = config.capacity.max_leases_per_labeler
        self.campaigns: dict[str, RoutedCampaign] = {c.name: c for c in config.campaigns}
        self._required = {c.name: frozenset(c.required_skills) for c in config.campaigns}
        self.history = ServedHistory(half_life, now)
        self.served: dict[str, int] = {c: 0 for c in self.campaigns}
        self._no_work_until: dict[str, float] = {}
        self._labelers: dict[str, LabelerState] = {}

    # --- who -----------------------------------------------------------------------

    def labeler(self, labeler_id: str, groups: Sequence[str], now: float) -> Labeler:
        state = self._state(labeler_id)
        state.last_seen = now
        return Labeler.signed_in(labeler_id, groups, self.skills, state.blocked_in(now))

    def _state(self, labeler_id: str) -> LabelerState:
        state = self._labelers.get(labeler_id)
        if state is None:
            state = self._labelers[labeler_id] = LabelerState()
        return state

    # --- decisions -----------------------------------------------------------------

    def pool_campaigns(self, now: float) -> list[PoolCampaign]:
        """The campaigns as fair_share sees them; a campaign whose no-work mark lapsed
        rejoins at its tier's share here."""
        campaigns = [
            PoolCampaign(
                c.name,
                c.priority,
                c.weight,
                self._required[c.name],
                has_work=self._no_work_until.get(c.name, 0.0) <= now,
            )
            for c in self.campaigns.values()
        ]
        for campaign in campaigns:
            if campaign.has_work and campaign.name in self._no_work_until:
                del self._no_work_until[campaign.name]
                self.history = self.history.with_rejoined(campaign, campaigns)
        return campaigns

    def decide(
        self,
        labeler: Labeler,
        now: float,
        freed: int = 0,
        skip: frozenset[str] = frozenset(),
    ) -> Decision | CapacityFull:
        """skip: campaigns already tried for this claim (they refused it): the next tier
        down gets its turn when a whole tier refused."""
        full = self.capacity_full(labeler.id, now, freed)
        if full is not None:
            return full
        campaigns = [c for c in self.pool_campaigns(now) if c.name not in skip]
        return route(labeler, campaigns, self.history)

    def capacity_full(self, labeler_id: str, now: float, freed: int = 0) -> CapacityFull | None:
        """freed: leases about to be given back (a submit being forwarded)."""
        leases = self._state(labeler_id).live_leases(now)
        if len(leases) - freed < self.max_leases:
            return None
        first = min(leases.values())
        return CapacityFull(len(leases), self.max_leases, max(1, math.ceil(first - now)))

    # --- what the workers answered -----------------------------------------------------

    def leased(
        self, labeler_id: str, campaign: str, item_id: str, expires: float, now: float
    ) -> None:
        self.history = self.history.with_served(campaign, now)
        self.served[campaign] = self.served.get(campaign, 0) + 1
        self._state(labeler_id).leases[(campaign, item_id)] = expires

    def done(self, labeler_id: str, campaign: str, item_id: str) -> None:
        """The lease ended: labeled, released, or the worker says it is not held."""
        self._state(labeler_id).leases.pop((campaign, item_id), None)

    def no_work(self, campaign: str, now: float) -> None:
        self._no_work_until[campaign] = now + NO_WORK_SECONDS

    def blocked(self, labeler_id: str, campaign: str, now: float) -> None:
        self._state(labeler_id).blocked_until[campaign] = now + BLOCKED_SECONDS

    # --- what it tells -------------------------------------------------------------------

    def leases_of(self, labeler_id: str, now: float) -> dict[str, int]:
        counts = {c: 0 for c in self.campaigns}
        for campaign, _ in self._state(labeler_id).live_leases(now):
            counts[campaign] = counts.get(campaign, 0) + 1
        return counts

    def view(self, now: float) -> list[CampaignView]:
        campaigns = self.pool_campaigns(now)
        history = self.history.decayed(now)
        share = shares(campaigns, history)
        active = {c.name: 0 for c in campaigns}
        for state in self._labelers.values():
            for name in {campaign for campaign, _ in state.live_leases(now)}:
                active[name] = active.get(name, 0) + 1
        return [
            CampaignView(
                c.name,
                c.priority,
                c.weight,
                self.served.get(c.name, 0),
                history.usage(c.name),
                share[c.name],
                c.has_work,
                active.get(c.name, 0),
            )
            for c in campaigns
        ]

    def active_labelers(self, now: float, window: float) -> int:
        return sum(1 for s in self._labelers.values() if s.last_seen > now - window)
