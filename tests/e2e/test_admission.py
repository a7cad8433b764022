"""Invalid campaigns never reach the operator: the API server refuses them at admission,
with a message naming the field (OpenAPI schema, enums, defaults and CEL rules of the CRD).

No operator runs here; only the CRD from crds/ is installed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
from kubernetes import client
from test_operator_harness import (
    apply,
    campaign_documents,
    crd_namespace,
    delete_campaign,
    get_campaign,
)

from labelops.api import labeler_pool as labeler_pool_api
from labelops.api.campaign import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    with crd_namespace(kube_api, "e2e-admission") as name:
        yield name


def campaign(namespace: str, name: str = "bad", **changes: Any) -> dict[str, Any]:
    _, body = campaign_documents(namespace, name, **changes)
    return body


def create(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )


def rejection(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> str:
    with pytest.raises(client.ApiException) as caught:
        create(api, namespace, body)
    assert caught.value.status == 422, caught.value.body
    return str(json.loads(caught.value.body or "{}")["message"])


def without(body: dict[str, Any], dotted: str) -> dict[str, Any]:
    node = body["spec"]
    *path, last = dotted.split(".")
    for key in path:
        node = node[key]
    del node[last]
    return body


INVALID_ON_CREATE = [
    pytest.param({"task.type": "essay"}, ["spec.task.type", "pairwise"], id="unknown task type"),
    pytest.param({"task.instructions": ""}, ["spec.task.instructions"], id="empty instructions"),
    pytest.param({"target.items": 0}, ["spec.target.items", "1"], id="zero items"),
    pytest.param({"target.labelsPerItem": 101}, ["spec.target.labelsPerItem"], id="overlap >100"),
    pytest.param(
        {"task.type": "classification"},
        ["spec.task.choices", "at least 2 choices"],
        id="classification without choices",
    ),
    pytest.param(
        {"task.type": "rating"}, ["spec.task.scale", "is required"], id="rating without scale"
    ),
    pytest.param(
        {"task.type": "rating", "task.scale": {"min": 5, "max": 1}},
        ["spec.task.scale", "min must be less than"],
        id="inverted scale",
    ),
    pytest.param(
        {"task.type": "free-text", "task.minLength": 50, "task.maxLength": 10},
        ["spec.task.minLength", "must not exceed"],
        id="minLength above maxLength",
    ),
    pytest.param({"kafka.partitions": 0}, ["spec.kafka.partitions"], id="zero partitions"),
    pytest.param(
        {"kafka.retention": "7 days"}, ["spec.kafka.retention"], id="retention not a duration"
    ),
    pytest.param({"reclaimPolicy": "Keep"}, ["spec.reclaimPolicy", "Retain"], id="bad policy"),
    pytest.param({"workers.replicas": -1}, ["spec.workers.replicas"], id="negative replicas"),
    pytest.param(
        {"quotas.kubernetes": {"cpu": "lots"}},
        ["spec.quotas.kubernetes.cpu"],
        id="cpu not a quantity",
    ),
    pytest.param(
        {"quotas.leaseSeconds": 1}, ["spec.quotas.leaseSeconds", "10"], id="lease too short"
    ),
    pytest.param(
        {"labelers.tokenSecretRef.name": "Not_A_Name"},
        ["spec.labelers.tokenSecretRef.name"],
        id="secret name not DNS",
    ),
    pytest.param({"deadline": "next tuesday"}, ["spec.deadline"], id="deadline not RFC 3339"),
    # Models in the loop and data quality.
    pytest.param(
        {"quality.overlap": {"min": 5, "max": 2, "agreement": 0.9}},
        ["spec.quality.overlap.min", "must not exceed quality.overlap.max"],
        id="overlap min above max",
    ),
    pytest.param(
        {"quality.overlap": {"min": 2, "max": 5, "agreement": 0.4}},
        ["spec.quality.overlap.agreement", "0.5"],
        id="agreement not above 0.5",
    ),
    pytest.param(
        {"quality.gold": {"rate": 1.0}}, ["spec.quality.gold.rate", "1"], id="gold rate 1"
    ),
    pytest.param(
        {"model.autoAccept": {"targetAccuracy": 1.5}},
        ["spec.model.autoAccept.targetAccuracy", "1"],
        id="target accuracy above 1",
    ),
    pytest.param(
        {"model.autoAccept": {"auditRate": 0}},
        ["spec.model.autoAccept.auditRate", "0"],
        id="no audits",
    ),
    pytest.param(
        {"task.type": "free-text", "quality.overlap": {"min": 2, "max": 5, "agreement": 0.9}},
        ["spec.quality.overlap", "needs a categorical task type"],
        id="overlap on free text",
    ),
    pytest.param(
        {"task.type": "ranking", "model.learner": {"type": "builtin"}},
        ["spec.model.learner", "serves pairwise, rating and classification"],
        id="learner for ranking",
    ),
]


@pytest.mark.parametrize(("changes", "expected"), INVALID_ON_CREATE)
def test_invalid_campaign_is_rejected_naming_the_field(
    kube_api: client.ApiClient, namespace: str, changes: dict[str, Any], expected: list[str]
) -> None:
    message = rejection(kube_api, namespace, campaign(namespace, **changes))
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in: {message}"


def test_missing_labelers_is_rejected(kube_api: client.ApiClient, namespace: str) -> None:
    message = rejection(kube_api, namespace, without(campaign(namespace), "labelers"))
    assert "spec.labelers" in message and "Required" in message


def test_too_long_name_is_rejected(kube_api: client.ApiClient, namespace: str) -> None:
    message = rejection(kube_api, namespace, campaign(namespace, name="n" * 49))
    assert "metadata.name must be at most 48 characters" in message


def test_nothing_was_created_by_the_rejections(kube_api: client.ApiClient, namespace: str) -> None:
    assert get_campaign(kube_api, namespace, "bad") is None


def test_defaults_are_applied_by_the_api_server(kube_api: client.ApiClient, namespace: str) -> None:
    body = without(without(campaign(namespace, "defaults"), "kafka"), "reclaimPolicy")
    create(kube_api, namespace, body)
    try:
        stored = get_campaign(kube_api, namespace, "defaults")
        assert stored is not None
        spec = stored["spec"]
        assert spec["reclaimPolicy"] == "Retain"
        assert spec["kafka"] == {"partitions": 3, "replicationFactor": 1, "retention": "7d"}
        assert spec["paused"] is False
    finally:
        delete_campaign(kube_api, namespace, "defaults")


IMMUTABLE = [
    pytest.param(
        {"task": {"type": "rating", "scale": {"min": 1, "max": 5}}},
        ["spec.task.type", "immutable"],
        id="task type",
    ),
    pytest.param(
        {"target": {"labelsPerItem": 1}},
        ["spec.target.labelsPerItem", "may not decrease"],
        id="overlap decrease",
    ),
    pytest.param(
        {"kafka": {"replicationFactor": 3}},
        ["spec.kafka.replicationFactor", "immutable"],
        id="replication factor",
    ),
]


@pytest.mark.parametrize(("patch", "expected"), IMMUTABLE)
def test_changes_that_cannot_be_made_are_rejected_on_update(
    kube_api: client.ApiClient, namespace: str, patch: dict[str, Any], expected: list[str]
) -> None:
    apply(kube_api, [campaign(namespace, "immutable")])
    try:
        with pytest.raises(client.ApiException) as caught:
            client.CustomObjectsApi(kube_api).patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, "immutable", {"spec": patch}
            )
        assert caught.value.status == 422
        message = json.loads(caught.value.body or "{}")["message"]
        for fragment in expected:
            assert fragment in message, f"{fragment!r} not in: {message}"
    finally:
        delete_campaign(kube_api, namespace, "immutable")


# --- shared workforce: LabelerPool and a campaign's poolRef (issue 13) ----------------------

POOL = {"identity": {"oidc": {"issuer": "https://idp.example.com", "audience": "labelops"}}}


def labeler_pool(name: str = "bad-pool", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": labeler_pool_api.KIND,
        "metadata": {"name": name},
        "spec": {**POOL, **spec},
    }


def pool_rejection(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> str:
    with pytest.raises(client.ApiException) as caught:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, labeler_pool_api.PLURAL, body
        )
    assert caught.value.status == 422, caught.value.body
    return str(json.loads(caught.value.body or "{}")["message"])


INVALID_POOL_CAMPAIGNS = [
    pytest.param(
        {"labelers.poolRef": {"name": "experts"}},
        ["spec.labelers", "exactly one of labelers.tokenSecretRef", "labelers.poolRef"],
        id="tokens secret and pool",
    ),
    pytest.param(
        {"labelers": {"poolRef": {"name": "experts", "weight": 0}}},
        ["spec.labelers.poolRef.weight", "1"],
        id="weight 0",
    ),
    pytest.param(
        {"labelers": {"poolRef": {"name": "Experts!"}}},
        ["spec.labelers.poolRef.name"],
        id="pool name not DNS",
    ),
    pytest.param(
        {"labelers": {"blocked": ["x"]}},
        ["spec.labelers", "exactly one of labelers.tokenSecretRef"],
        id="neither tokens nor pool",
    ),
]


@pytest.mark.parametrize(("changes", "expected"), INVALID_POOL_CAMPAIGNS)
def test_invalid_pool_ref_is_rejected_naming_the_field(
    kube_api: client.ApiClient, namespace: str, changes: dict[str, Any], expected: list[str]
) -> None:
    message = rejection(kube_api, namespace, campaign(namespace, **changes))
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in: {message}"


INVALID_POOLS = [
    pytest.param(
        {"identity": {}},
        ["spec.identity", "exactly one of identity.oidc", "identity.tokens"],
        id="no identity",
    ),
    pytest.param(
        {"identity": {**POOL["identity"], "tokens": {"secretRef": {"name": "pool-tokens"}}}},
        ["spec.identity", "exactly one of identity.oidc"],
        id="oidc and tokens",
    ),
    pytest.param(
        {"identity": {"oidc": {"issuer": "http://idp.example.com", "audience": "labelops"}}},
        ["spec.identity.oidc.issuer", "https://"],
        id="issuer over plain http",
    ),
    pytest.param(
        {"identity": {"oidc": {"issuer": "https://idp.example.com"}}},
        ["spec.identity.oidc.audience", "Required"],
        id="no audience",
    ),
    pytest.param(
        {"skills": [{"name": "python"}]},
        ["spec.skills[0]", "groups or skills[].members must list at least one"],
        id="skill nobody has",
    ),
    pytest.param(
        {"skills": [{"name": "Python", "groups": ["coders"]}]},
        ["spec.skills[0].name"],
        id="skill name not a DNS label",
    ),
    pytest.param(
        {"capacity": {"maxLeasesPerLabeler": 0}},
        ["spec.capacity.maxLeasesPerLabeler", "1"],
        id="no leases",
    ),
]


@pytest.mark.parametrize(("spec", "expected"), INVALID_POOLS)
def test_invalid_pool_is_rejected_naming_the_field(
    kube_api: client.ApiClient, namespace: str, spec: dict[str, Any], expected: list[str]
) -> None:
    message = pool_rejection(kube_api, namespace, labeler_pool(**spec))
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in: {message}"


def test_pool_and_pool_campaign_are_accepted_with_defaults(
    kube_api: client.ApiClient, namespace: str
) -> None:
    api = client.CustomObjectsApi(kube_api)
    body = labeler_pool("experts", skills=[{"name": "python", "groups": ["coders"]}])
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, labeler_pool_api.PLURAL, body)
    joined = campaign(namespace, "joined")
    joined["spec"]["labelers"] = {"poolRef": {"name": "experts", "requiredSkills": ["python"]}}
    create(kube_api, namespace, joined)
    try:
        stored_pool = cast(
            dict[str, Any],
            api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, labeler_pool_api.PLURAL, "experts"
            ),
        )
        oidc = stored_pool["spec"]["identity"]["oidc"]
        assert (oidc["usernameClaim"], oidc["groupsClaim"]) == ("sub", "groups")
        assert stored_pool["spec"]["capacity"] == {"maxLeasesPerLabeler": 5}
        stored = get_campaign(kube_api, namespace, "joined")
        assert stored is not None
        assert stored["spec"]["labelers"]["poolRef"] == {
            "name": "experts",
            "requiredSkills": ["python"],
            "weight": 1,
            "priority": 0,
        }
    finally:
        delete_campaign(kube_api, namespace, "joined")
        api.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, labeler_pool_api.PLURAL, "experts"
        )
