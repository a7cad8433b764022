"""pool_status: nominal and actual shares, active labelers, Ready/Stalled of a pool."""

from __future__ import annotations

import datetime as dt

from labelops.api.campaign import PoolRef
from labelops.operator import pool_status
from labelops.operator.pool_plan import Member
from labelops.operator.pool_status import CampaignUsage, PoolProblem

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def member(name: str, weight: int = 1, priority: int = 0, pending: int | None = 5) -> Member:
    return Member(name, PoolRef(name="crowd", weight=weight, priority=priority), pending)


def test_nominal_shares_by_weight_within_tier_and_without_work() -> None:
    joined = [member("a", 1), member("b", 2), member("idle", 3, pending=0), member("hi", 1, 5)]
    found = {c.name: c for c in pool_status.campaign_statuses(joined, {})}
    assert found["a"].nominal_share == round(1 / 3, 4)
    assert found["b"].nominal_share == round(2 / 3, 4)
    assert found["idle"].nominal_share is None
    assert found["hi"].nominal_share == 1.0
    assert found["a"].actual_share is None
    assert found["idle"].pending_items == 0


def test_actual_shares_and_active_labelers_from_usage() -> None:
    joined = [member("a"), member("b")]
    usage = {
        "a": CampaignUsage(30.0, frozenset({"ann", "bob"})),
        "b": CampaignUsage(10.0, frozenset({"bob"})),
    }
    status = pool_status.pool_status({}, 4, joined, usage, None, None, NOW)
    by_name = {c["name"]: c for c in status["campaigns"]}
    assert by_name["a"]["actualShare"] == 0.75 and by_name["b"]["actualShare"] == 0.25
    assert by_name["a"]["labelersActive"] == 2
    assert status["activeLabelers"] == 2
    assert status["observedGeneration"] == 4
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "RouterAvailable"


def test_problem_stalls_and_names_the_reason() -> None:
    problem = PoolProblem("SecretNotFound", "spec.identity.tokens.secretRef: not found")
    status = pool_status.pool_status({}, 1, [member("a")], {}, problem, None, NOW)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "SecretNotFound"
    assert conditions["Stalled"]["status"] == "True"


def test_no_campaigns_is_ready_and_router_unavailable_is_not() -> None:
    empty = pool_status.pool_status({}, 1, [], {}, None, "x", NOW)
    ready = next(c for c in empty["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "NoCampaigns")
    waiting = pool_status.pool_status({}, 1, [member("a")], {}, None, "not yet", NOW)
    ready = next(c for c in waiting["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RouterUnavailable")


def test_same_observation_gives_the_same_status_so_nothing_is_patched() -> None:
    joined = [member("a")]
    first = pool_status.pool_status({}, 1, joined, {}, None, None, NOW)
    later = NOW + dt.timedelta(seconds=5)
    assert pool_status.pool_status(first, 1, joined, {}, None, None, later) == first


def test_router_readiness_reads_the_deployment() -> None:
    assert pool_status.router_readiness(None) is not None
    live = {
        "metadata": {"generation": 2},
        "status": {"observedGeneration": 2, "updatedReplicas": 1, "availableReplicas": 1},
    }
    assert pool_status.router_readiness(live) is None
    stale = {**live, "metadata": {"generation": 3}}
    assert "generation" in (pool_status.router_readiness(stale) or "")
