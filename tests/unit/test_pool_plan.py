"""pool_plan: a LabelerPool's router objects, membership, skills and pool tokens."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import yaml

from labelops.api.labeler_pool import LabelerPoolSpec
from labelops.api.pool_router import LABELER_DIGESTS_KEY, ROUTER_CONFIG_KEY, RouterConfig
from labelops.operator import pool_plan
from labelops.operator.network_policy import NetworkPolicyPeers
from labelops.store.labeler_tokens import token_digest

POOL = pool_plan.PoolObjectRef("team", "crowd", "uid-1", 3)
SPEC = LabelerPoolSpec.model_validate(
    {
        "identity": {"tokens": {"secretRef": {"name": "crowd-tokens"}}},
        "skills": [
            {"name": "python", "members": ["ann", "bob"]},
            {"name": "french", "members": ["bob"]},
        ],
    }
)
OIDC = LabelerPoolSpec.model_validate(
    {
        "identity": {"oidc": {"issuer": "https://idp.example", "audience": "labelops"}},
        "skills": [{"name": "python", "groups": ["devs"]}],
    }
)


EXAMPLE = next(
    doc
    for doc in yaml.safe_load_all(
        (Path(__file__).parents[2] / "examples" / "sms-spam-classification.yaml").read_text()
    )
    if doc and doc["kind"] == "LabelingCampaign"
)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def campaign(name: str, pool: str | None, **ref: Any) -> dict[str, Any]:
    labelers: dict[str, Any] = (
        {"poolRef": {"name": pool, **ref}} if pool else {"tokenSecretRef": {"name": "t"}}
    )
    spec = copy.deepcopy(EXAMPLE["spec"])
    spec["labelers"] = labelers
    return {
        "metadata": {"name": name, "namespace": "team"},
        "spec": spec,
        "status": {"progress": {"itemsTotal": 10, "itemsCompleted": 4}},
    }


def test_members_are_the_campaigns_naming_the_pool_sorted() -> None:
    found = pool_plan.members(
        "crowd",
        [
            campaign("b", "crowd", weight=2),
            campaign("a", "crowd", priority=1, requiredSkills=["python"]),
            campaign("other", "elsewhere"),
            campaign("own", None),
            {**campaign("gone", "crowd"), "metadata": {"name": "gone", "deletionTimestamp": "x"}},
        ],
    )
    assert [m.name for m in found] == ["a", "b"]
    assert found[0].ref.priority == 1 and found[1].ref.weight == 2
    assert found[0].pending_items == 6


def test_router_config_names_each_member_worker_url() -> None:
    joined = pool_plan.members("crowd", [campaign("a", "crowd", requiredSkills=["python"])])
    config = pool_plan.router_config(POOL, SPEC, joined)
    cm = pool_plan.router_config_map(POOL, config)
    parsed = RouterConfig.model_validate_json(cm["data"][ROUTER_CONFIG_KEY])
    assert parsed.campaigns[0].url == "http://a-worker.team.svc:8080"
    assert parsed.campaigns[0].required_skills == ["python"]
    assert cm["metadata"]["name"] == "crowd-router"
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "LabelerPool"


def test_route_tokens_are_kept_for_members_new_for_joiners_dropped_for_leavers() -> None:
    joined = pool_plan.members("crowd", [campaign("a", "crowd"), campaign("c", "crowd")])
    existing = {"campaign.a": "kept", "campaign.b": "left"}
    tokens = pool_plan.route_tokens(existing, joined, lambda: "fresh")
    assert tokens == {"a": "kept", "c": "fresh"}
    secret = pool_plan.router_secret(POOL, tokens, "{}")
    assert set(secret["data"]) == {"campaign.a", "campaign.c", LABELER_DIGESTS_KEY}
    assert pool_plan.route_token_of(secret, "a") == "kept"
    assert pool_plan.route_token_of(secret, "b") is None


def _tokens_secret(labels: dict[str, str], **data: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "crowd-tokens", "labels": labels},
        "data": {k: _b64(v) for k, v in data.items()},
    }


def test_pool_tokens_need_the_pool_label() -> None:
    missing = pool_plan.pool_tokens("crowd", "team", SPEC, None)
    assert missing.digests == {} and "not found" in (missing.problem or "")
    other = pool_plan.pool_tokens(
        "crowd", "team", SPEC, _tokens_secret({"labelops.dev/pool": "x"}, ann="t1")
    )
    assert other.digests == {}
    assert "labelops.dev/pool=crowd" in (other.problem or "") and "'x'" in (other.problem or "")
    ours = pool_plan.pool_tokens(
        "crowd",
        "team",
        SPEC,
        _tokens_secret({"labelops.dev/pool": "crowd", "app.kubernetes.io/managed-by": "labelops"}),
    )
    assert "written by the operator" in (ours.problem or "")


def test_member_digests_only_labelers_with_every_required_skill() -> None:
    tokens = pool_plan.pool_tokens(
        "crowd",
        "team",
        SPEC,
        _tokens_secret({"labelops.dev/pool": "crowd"}, ann="t1", bob="t2", cid="t3"),
    )
    assert tokens.problem is None
    (a,) = pool_plan.members("crowd", [campaign("a", "crowd", requiredSkills=["python", "french"])])
    assert pool_plan.member_digests(tokens, SPEC, a.ref) == {"bob": token_digest(b"t2")}
    (b,) = pool_plan.members("crowd", [campaign("b", "crowd")])
    assert set(pool_plan.member_digests(tokens, SPEC, b.ref)) == {"ann", "bob", "cid"}
    assert json.loads(pool_plan.labeler_digests_json(tokens.digests))["ann"] == (
        token_digest(b"t1").hex()
    )


def test_unknown_skill_names_the_skill_and_the_pools_skills() -> None:
    (a,) = pool_plan.members("crowd", [campaign("a", "crowd", requiredSkills=["rust"])])
    problem = pool_plan.unknown_skill_problem("crowd", SPEC, a.ref)
    assert problem is not None
    assert "'rust'" in problem and "'french', 'python'" in problem
    (b,) = pool_plan.members("crowd", [campaign("b", "crowd", requiredSkills=["python"])])
    assert pool_plan.unknown_skill_problem("crowd", SPEC, b.ref) is None


def test_router_deployment_hardened_with_env_per_member_and_hash() -> None:
    joined = pool_plan.members("crowd", [campaign("a", "crowd"), campaign("b", "crowd")])
    config = pool_plan.router_config(POOL, SPEC, joined)
    secret = pool_plan.router_secret(POOL, {"a": "x", "b": "y"}, "{}")
    dep = pool_plan.router_deployment(POOL, "reg/labelops:1", config, secret)
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["labelops", "router"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e["valueFrom"] for e in container["env"]}
    assert env["LABELOPS_ROUTE_TOKEN_a"]["secretKeyRef"] == {
        "name": "crowd-router",
        "key": "campaign.a",
    }
    assert env["LABELOPS_LABELER_DIGESTS"]["secretKeyRef"]["key"] == LABELER_DIGESTS_KEY
    assert "LABELOPS_ROUTER_CONFIG" in env
    changed = pool_plan.router_secret(POOL, {"a": "x", "b": "z"}, "{}")
    other = pool_plan.router_deployment(POOL, "reg/labelops:1", config, changed)
    annotations = lambda d: d["spec"]["template"]["metadata"]["annotations"]  # noqa: E731
    assert annotations(dep) != annotations(other)
    assert pool_plan.router_service(POOL)["spec"]["ports"][0]["port"] == 80


def test_oidc_pool_members_get_issuer_and_required_skills_env() -> None:
    (a,) = pool_plan.members("crowd", [campaign("a", "crowd", requiredSkills=["python"])])
    env = {e["name"]: e["value"] for e in pool_plan.member_worker_env(OIDC, a.ref)}
    assert env["LABELOPS_OIDC_ISSUER"] == "https://idp.example"
    assert env["LABELOPS_OIDC_AUDIENCE"] == "labelops"
    assert json.loads(env["LABELOPS_REQUIRED_SKILLS"]) == [
        {"name": "python", "groups": ["devs"], "members": []}
    ]
    assert pool_plan.member_worker_env(SPEC, a.ref) == []


def test_network_policy_egress_to_members_and_https_for_oidc() -> None:
    joined = pool_plan.members("crowd", [campaign("a", "crowd")])
    assert pool_plan.router_network_policy(POOL, SPEC, joined, None) is None
    policy = pool_plan.router_network_policy(POOL, OIDC, joined, NetworkPolicyPeers())
    assert policy is not None
    egress = policy["spec"]["egress"]
    selector = egress[0]["to"][0]["podSelector"]["matchExpressions"][0]
    assert selector["values"] == ["a"]
    assert {"port": 443, "protocol": "TCP"} in egress[-1]["ports"]
    tokens_policy = pool_plan.router_network_policy(POOL, SPEC, joined, NetworkPolicyPeers())
    assert tokens_policy is not None and len(tokens_policy["spec"]["egress"]) == 2
