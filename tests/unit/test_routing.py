"""The pool router's decision: priority tiers, weighted fair share over a decaying window,
borrowing, skills and blocks (labelops/routing). Simulated claims, no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import pytest

from labelops.api.campaign import PoolRef
from labelops.api.labeler_pool import Skill
from labelops.routing.fair_share import (
    Exclusion,
    Labeler,
    PoolCampaign,
    ServedHistory,
    route,
    shares,
)
from labelops.routing.skills import skills_of

LABELERS = [Labeler(f"labeler-{i:02d}") for i in range(20)]
ONE_TWO_ONE = [
    PoolCampaign("a", weight=1),
    PoolCampaign("b", weight=2),
    PoolCampaign("c", weight=1),
]
SECONDS_PER_CLAIM = 0.5  # 20 labelers, one label each every 10 s


def simulate(
    campaigns: Sequence[PoolCampaign],
    claims: int,
    history: ServedHistory | None = None,
    labelers: Sequence[Labeler] = LABELERS,
    start: float = 0.0,
    campaigns_at: Callable[[int], Sequence[PoolCampaign]] | None = None,
) -> tuple[Counter[str], ServedHistory]:
    """Labelers claim in turn; each claim is served by the routed campaign."""
    history = history or ServedHistory(half_life=300.0)
    served: Counter[str] = Counter()
    for i in range(claims):
        now = start + i * SECONDS_PER_CLAIM
        offered = campaigns_at(i) if campaigns_at else campaigns
        decision = route(labelers[i % len(labelers)], offered, history)
        if decision.campaign is None:
            continue
        served[decision.campaign] += 1
        history = history.with_served(decision.campaign, now)
    return served, history


def percent(served: Counter[str], name: str) -> float:
    return 100.0 * served[name] / sum(served.values())


def test_one_two_one_converges_within_five_points_of_nominal_shares() -> None:
    _, warm = simulate(ONE_TWO_ONE, 200)
    served, history = simulate(ONE_TWO_ONE, 2000, warm, start=100.0)
    for name, nominal in (("a", 25.0), ("b", 50.0), ("c", 25.0)):
        assert abs(percent(served, name) - nominal) <= 5.0, (name, served)
    reported = shares(ONE_TWO_ONE, history)
    assert reported["b"].nominal == pytest.approx(0.5)
    assert reported["b"].actual == pytest.approx(0.5, abs=0.05)


def test_every_window_of_a_hundred_claims_is_within_five_points() -> None:
    history = ServedHistory(half_life=300.0)
    for window in range(10):
        served, history = simulate(ONE_TWO_ONE, 100, history, start=window * 50.0)
        assert abs(percent(served, "b") - 50.0) <= 5.0, (window, served)


def test_a_campaign_out_of_work_lends_its_share_to_the_others_in_proportion() -> None:
    _, history = simulate(ONE_TWO_ONE, 400)
    c_done = [*ONE_TWO_ONE[:2], PoolCampaign("c", weight=1, has_work=False)]
    served, history = simulate(c_done, 1200, history, start=200.0)
    assert served["c"] == 0
    assert abs(percent(served, "a") - 100 / 3) <= 5.0, served
    assert abs(percent(served, "b") - 200 / 3) <= 5.0, served
    reported = shares(c_done, history)
    assert reported["c"].nominal is None
    assert reported["a"].nominal == pytest.approx(1 / 3)


def test_a_returning_campaign_rejoins_at_its_share_without_a_payback_burst() -> None:
    c_done = [*ONE_TWO_ONE[:2], PoolCampaign("c", weight=1, has_work=False)]
    _, history = simulate(c_done, 1200)
    # Half a half-life later, c's decayed usage is far below the others': unlifted, it
    # would take every claim for a while.
    burst, _ = simulate(ONE_TWO_ONE, 100, history, start=600.0)
    assert percent(burst, "c") > 50.0, burst
    lifted = history.with_rejoined(ONE_TWO_ONE[2], ONE_TWO_ONE)
    served, _ = simulate(ONE_TWO_ONE, 100, lifted, start=600.0)
    assert abs(percent(served, "c") - 25.0) <= 5.0, served


def test_a_higher_priority_tier_gets_every_labeler_before_a_lower_one() -> None:
    urgent = PoolCampaign("urgent", priority=1, weight=1)
    campaigns = [*ONE_TWO_ONE, urgent]
    served, _ = simulate(campaigns, 500)
    assert served == Counter({"urgent": 500})
    decision = route(LABELERS[0], campaigns, ServedHistory())
    assert decision.excluded == {n: Exclusion.LOWER_PRIORITY for n in ("a", "b", "c")}
    # Its work done, the lower tier is served again.
    served, _ = simulate([*ONE_TWO_ONE, PoolCampaign("urgent", priority=1, has_work=False)], 400)
    assert set(served) == {"a", "b", "c"}


def test_a_labeler_without_the_required_skill_never_gets_the_campaign() -> None:
    coders = frozenset({"python"})
    python = PoolCampaign("python-review", priority=1, required_skills=coders)
    labelers = [Labeler(f"l{i}", skills=coders if i < 5 else frozenset()) for i in range(20)]
    campaigns = [python, *ONE_TWO_ONE]
    served_to: dict[str, Counter[str]] = {}
    history = ServedHistory()
    for i in range(2000):
        labeler = labelers[i % 20]
        decision = route(labeler, campaigns, history)
        assert decision.campaign is not None
        served_to.setdefault(labeler.id, Counter())[decision.campaign] += 1
        history = history.with_served(decision.campaign, i * SECONDS_PER_CLAIM)
        if labeler.skills:
            assert decision.campaign == "python-review"
        else:
            assert decision.excluded["python-review"] is Exclusion.MISSING_SKILL
    assert all("python-review" not in served_to[f"l{i}"] for i in range(5, 20))


def test_a_labeler_is_never_routed_to_a_campaign_they_are_blocked_in() -> None:
    blocked = Labeler("mallory", blocked_in=frozenset({"b"}))
    served, _ = simulate(ONE_TWO_ONE, 300, labelers=[blocked])
    assert served["b"] == 0 and served["a"] > 0 and served["c"] > 0
    assert route(blocked, ONE_TWO_ONE, ServedHistory()).excluded == {"b": Exclusion.BLOCKED}


def test_nothing_to_route_says_why_for_each_campaign() -> None:
    campaigns = [
        PoolCampaign("a", has_work=False),
        PoolCampaign("b", required_skills=frozenset({"german"})),
    ]
    decision = route(Labeler("x"), campaigns, ServedHistory())
    assert decision.campaign is None and decision.order == ()
    assert decision.excluded == {"a": Exclusion.NO_WORK, "b": Exclusion.MISSING_SKILL}


def test_ties_go_to_the_higher_weight_then_the_name() -> None:
    campaigns = [PoolCampaign("z", weight=1), PoolCampaign("m", weight=3), PoolCampaign("a")]
    assert route(Labeler("x"), campaigns, ServedHistory()).order == ("m", "a", "z")
    again = [route(Labeler("x"), list(reversed(campaigns)), ServedHistory()).order for _ in "ab"]
    assert again == [("m", "a", "z")] * 2


def test_the_decay_forgets_old_service_with_the_half_life() -> None:
    history = ServedHistory(half_life=10.0).with_served("a", 0.0, labels=8)
    assert history.decayed(10.0).usage("a") == pytest.approx(4.0)
    assert history.with_served("a", 20.0).usage("a") == pytest.approx(3.0)
    assert history.decayed(-5.0).usage("a") == 8.0, "a clock going backwards decays nothing"


def test_invalid_weight_and_half_life_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match=r"poolRef.weight 0 must be >= 1"):
        PoolCampaign("a", weight=0)
    with pytest.raises(ValueError, match="half_life 0"):
        ServedHistory(half_life=0)


def test_skills_come_from_groups_or_membership() -> None:
    pool_skills = [
        Skill(name="python", groups=["coders", "ml"]),
        Skill(name="german", members=["anna@example.com"]),
        Skill(name="medicine", groups=["doctors"], members=["bob@example.com"]),
    ]
    assert skills_of("anna@example.com", ["ml"], pool_skills) == {"python", "german"}
    assert skills_of("bob@example.com", [], pool_skills) == {"medicine"}
    assert skills_of("eve@example.com", ["sales"], pool_skills) == frozenset()
    labeler = Labeler.signed_in("anna@example.com", ["ml"], pool_skills)
    assert labeler.skills == {"python", "german"}


def test_a_campaign_joins_from_its_pool_ref() -> None:
    ref = PoolRef(name="experts", required_skills=["python"], weight=2, priority=1)
    joined = PoolCampaign.joined("review", ref, has_work=True)
    assert joined == PoolCampaign("review", 1, 2, frozenset({"python"}), True)
