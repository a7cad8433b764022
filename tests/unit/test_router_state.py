"""The router's routing state (router/state.py): fair share over claims, borrowing and
rejoining, priority tiers, skills, blocks, pool capacity and lease expiry; and task ids."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from labelops.api.pool_router import RouterConfig, split_task_id, task_id
from labelops.router.state import BLOCKED_SECONDS, NO_WORK_SECONDS, CapacityFull, PoolState
from labelops.routing.fair_share import Decision


def config(campaigns: list[dict[str, Any]], **extra: Any) -> RouterConfig:
    return RouterConfig.model_validate(
        {
            "pool": "crowd",
            "namespace": "ns",
            "identity": {"tokens": {"secretRef": {"name": "t"}}},
            "campaigns": [{"url": f"http://{c['name']}:8080", **c} for c in campaigns],
            **extra,
        }
    )


def claim(state: PoolState, who: str, now: float, groups: tuple[str, ...] = ()) -> str | None:
    """What the router does for a claim whose worker leases: the first of the order."""
    decision = state.decide(state.labeler(who, groups, now), now)
    assert isinstance(decision, Decision)
    campaign = decision.campaign
    if campaign is not None:
        state.leased(who, campaign, f"item-{now}", now + 300, now)
        state.done(who, campaign, f"item-{now}")
    return campaign


def test_weights_1_2_1_converge_to_shares_1_2_1() -> None:
    state = PoolState(config([{"name": "a"}, {"name": "b", "weight": 2}, {"name": "c"}]))
    served = Counter(claim(state, f"l{n % 20}", n * 0.1) for n in range(400))
    assert served == {"a": 100, "b": 200, "c": 100}
    views = {v.name: v for v in state.view(40.0)}
    assert views["b"].share.nominal == 0.5
    assert views["b"].share.actual == pytest.approx(0.5, abs=0.01)


def test_a_campaign_without_work_lends_its_share_and_rejoins_without_claiming_it_back() -> None:
    state = PoolState(config([{"name": "a"}, {"name": "b"}]))
    now = 0.0
    for _ in range(10):
        now += 0.01
        claim(state, "x", now)
    state.no_work("b", now)
    lent = Counter(claim(state, "x", now + 0.01 * i) for i in range(1, 21))
    assert lent == {"a": 20}
    now += NO_WORK_SECONDS + 0.5
    after = Counter(claim(state, "x", now + 0.01 * i) for i in range(20))
    # Back at its share (1:1), not taking the next 20 labels to catch up.
    assert abs(after["a"] - after["b"]) <= 1


def test_a_higher_priority_tier_takes_every_claim_while_it_has_work() -> None:
    state = PoolState(config([{"name": "low", "weight": 9}, {"name": "high", "priority": 5}]))
    assert {claim(state, "x", n) for n in range(10)} == {"high"}
    state.no_work("high", 10.0)
    assert claim(state, "x", 10.1) == "low"


def test_a_tier_that_refused_hands_the_claim_to_the_next_tier() -> None:
    state = PoolState(config([{"name": "low"}, {"name": "high", "priority": 5}]))
    decision = state.decide(state.labeler("x", (), 0.0), 0.0, skip=frozenset({"high"}))
    assert isinstance(decision, Decision) and decision.order == ("low",)


def test_an_unskilled_labeler_never_gets_the_skilled_campaign() -> None:
    skills = [{"name": "python", "groups": ["coders"], "members": ["pat"]}]
    state = PoolState(
        config([{"name": "a"}, {"name": "py", "requiredSkills": ["python"]}], skills=skills)
    )
    assert {claim(state, "ben", n) for n in range(20)} == {"a"}
    assert "py" in {claim(state, "pat", 20 + n) for n in range(4)}
    assert "py" in {claim(state, "oona", 30 + n, ("coders",)) for n in range(4)}


def test_a_block_is_believed_for_a_while_then_asked_again() -> None:
    state = PoolState(config([{"name": "a"}, {"name": "b", "weight": 5}]))
    state.blocked("x", "b", 0.0)
    assert {claim(state, "x", n) for n in range(5)} == {"a"}
    assert claim(state, "y", 5.0) == "b"  # only x is blocked there
    assert claim(state, "x", BLOCKED_SECONDS + 1) == "b"


def test_pool_capacity_counts_leases_across_campaigns_until_given_back_or_expired() -> None:
    state = PoolState(config([{"name": "a"}, {"name": "b"}], capacity={"maxLeasesPerLabeler": 2}))
    state.leased("x", "a", "1", 100.0, 0.0)
    state.leased("x", "b", "1", 50.0, 0.0)
    full = state.decide(state.labeler("x", (), 10.0), 10.0)
    assert full == CapacityFull(held=2, limit=2, retry_after=40)
    assert state.leases_of("x", 10.0) == {"a": 1, "b": 1}
    # A submit being forwarded frees its lease: the next task may be leased with it.
    assert isinstance(state.decide(state.labeler("x", (), 10.0), 10.0, freed=1), Decision)
    assert isinstance(state.decide(state.labeler("x", (), 51.0), 51.0), Decision)  # b expired
    state.leased("x", "b", "2", 200.0, 51.0)
    state.done("x", "a", "1")
    assert isinstance(state.decide(state.labeler("x", (), 52.0), 52.0), Decision)
    assert state.leases_of("x", 52.0) == {"a": 0, "b": 1}
    assert isinstance(state.decide(state.labeler("y", (), 52.0), 52.0), Decision)


def test_labelers_active_counts_who_holds_each_campaigns_tasks() -> None:
    state = PoolState(config([{"name": "a"}, {"name": "b"}]))
    state.leased("x", "a", "1", 100.0, 0.0)
    state.leased("x", "a", "2", 100.0, 0.0)
    state.leased("y", "a", "3", 100.0, 0.0)
    views = {v.name: v for v in state.view(1.0)}
    assert (views["a"].labelers_active, views["b"].labelers_active) == (2, 0)
    assert views["a"].served == 3


def test_task_ids_carry_the_campaign_and_split_at_its_first_separator() -> None:
    assert task_id("c1", "a:b/c") == "c1:a:b/c"
    assert split_task_id("c1:a:b/c") == ("c1", "a:b/c")
    assert split_task_id("no-campaign") is None
    assert split_task_id(":item") is None
    assert split_task_id("c1:") is None
