"""LabelerPool: the models are the single source of its CRD, and a campaign joins a pool
with spec.labelers.poolRef instead of its own tokens Secret (exactly one of the two).

The API server's side of the same rules (CEL messages at admission) is in
tests/e2e/test_admission.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from labelops.api.campaign import CampaignSpec
from labelops.api.crd import crd, labeler_pool_crd, labeler_pool_crd_yaml
from labelops.api.labeler_pool import LabelerPoolSpec, LabelerPoolStatus
from labelops.operator import plan

ROOT = Path(__file__).resolve().parents[2]
POOL_CRD = "labelerpools.labelops.dev.yaml"


def test_committed_pool_crd_matches_models_in_crds_and_the_chart() -> None:
    generated = labeler_pool_crd_yaml()
    assert (ROOT / "crds" / POOL_CRD).read_text() == generated, "run `make crds`"
    assert (ROOT / "charts" / "labelops" / "crds" / POOL_CRD).read_text() == generated


def test_pool_crd_is_namespaced_with_status_subresource_and_columns() -> None:
    doc = yaml.safe_load(labeler_pool_crd_yaml())
    assert doc["metadata"]["name"] == "labelerpools.labelops.dev"
    assert doc["spec"]["scope"] == "Namespaced"
    assert doc["spec"]["names"]["kind"] == "LabelerPool"
    version = doc["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Campaigns", "Active", "Ready", "Age"} <= columns


def test_identity_rule_and_defaults_are_in_the_crd() -> None:
    spec = labeler_pool_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"
    ]
    identity = spec["properties"]["identity"]
    assert [v["rule"] for v in identity["x-kubernetes-validations"]] == [
        "has(self.oidc) != has(self.tokens)"
    ]
    oidc = identity["properties"]["oidc"]["properties"]
    assert oidc["usernameClaim"]["default"] == "sub"
    assert oidc["groupsClaim"]["default"] == "groups"
    assert spec["properties"]["capacity"]["default"] == {"maxLeasesPerLabeler": 5}
    assert spec["properties"]["skills"]["x-kubernetes-list-map-keys"] == ["name"]


def test_a_pool_spec_parses_oidc_skills_and_capacity() -> None:
    spec = LabelerPoolSpec.model_validate(
        {
            "identity": {
                "oidc": {
                    "issuer": "https://idp.example.com/realms/data",
                    "audience": "labelops",
                    "usernameClaim": "email",
                }
            },
            "skills": [
                {"name": "python", "groups": ["coders"]},
                {"name": "german", "members": ["anna@example.com"]},
            ],
            "capacity": {"maxLeasesPerLabeler": 3},
        }
    )
    assert spec.identity.oidc is not None and spec.identity.oidc.username_claim == "email"
    assert spec.identity.oidc.groups_claim == "groups"
    assert [s.name for s in spec.skills] == ["python", "german"]
    assert spec.capacity.max_leases_per_labeler == 3


@pytest.mark.parametrize(
    ("issuer", "accepted"),
    [
        ("https://idp.example.com", True),
        ("https://login.example.com/tenant/v2.0", True),
        ("http://idp.example.com", False),
        ("https://idp.example.com/?x=1", False),
        ("idp.example.com", False),
    ],
)
def test_the_issuer_must_be_an_https_url(issuer: str, accepted: bool) -> None:
    body = {"identity": {"oidc": {"issuer": issuer, "audience": "labelops"}}}
    if accepted:
        LabelerPoolSpec.model_validate(body)
    else:
        with pytest.raises(ValidationError, match="issuer"):
            LabelerPoolSpec.model_validate(body)


def test_status_round_trips_in_camel_case() -> None:
    status = LabelerPoolStatus.model_validate(
        {
            "campaigns": [
                {"name": "a", "weight": 2, "nominalShare": 0.5, "actualShare": 0.48},
            ],
            "activeLabelers": 20,
        }
    )
    dumped = status.model_dump(by_alias=True, exclude_none=True)
    assert dumped["campaigns"][0]["nominalShare"] == 0.5
    assert dumped["activeLabelers"] == 20


def campaign_spec(labelers: dict[str, Any]) -> CampaignSpec:
    return CampaignSpec.model_validate(
        {
            "task": {"type": "pairwise", "instructions": "Which is better?"},
            "target": {"items": 10},
            "labelers": labelers,
        }
    )


def test_a_campaign_joins_a_pool_with_defaults_for_weight_and_priority() -> None:
    spec = campaign_spec({"poolRef": {"name": "experts", "requiredSkills": ["python"]}})
    ref = spec.labelers.pool_ref
    assert ref is not None
    assert (ref.name, ref.required_skills, ref.weight, ref.priority) == (
        "experts",
        ["python"],
        1,
        0,
    )
    assert spec.labelers.token_secret_ref is None


def test_exactly_one_of_token_secret_and_pool_is_a_crd_rule() -> None:
    labelers = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["labelers"]
    assert "required" not in labelers
    rules = [v["rule"] for v in labelers["x-kubernetes-validations"]]
    assert rules == ["has(self.tokenSecretRef) != has(self.poolRef)"]
    assert labelers["properties"]["poolRef"]["properties"]["weight"]["minimum"] == 1


def test_weight_below_one_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="weight"):
        campaign_spec({"poolRef": {"name": "experts", "weight": 0}})


def test_a_pool_campaign_has_no_tokens_secret_of_its_own() -> None:
    spec = campaign_spec({"poolRef": {"name": "experts"}})
    assert plan.tokens_secret_name(campaign_spec({"tokenSecretRef": {"name": "t"}})) == "t"
    with pytest.raises(ValueError, match="poolRef"):
        plan.tokens_secret_name(spec)


@pytest.mark.parametrize(
    "labelers",
    [{}, {"tokenSecretRef": {"name": "t"}, "poolRef": {"name": "experts"}}],
    ids=["neither", "both"],
)
def test_the_models_refuse_anything_but_one_source_of_labelers(labelers: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=r"exactly one of labelers\.tokenSecretRef"):
        campaign_spec(labelers)


@pytest.mark.parametrize(
    "identity",
    [
        {},
        {
            "oidc": {"issuer": "https://idp.example.com", "audience": "labelops"},
            "tokens": {"secretRef": {"name": "pool-tokens"}},
        },
    ],
    ids=["neither", "both"],
)
def test_the_models_refuse_anything_but_one_identity(identity: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=r"exactly one of identity\.oidc"):
        LabelerPoolSpec.model_validate({"identity": identity})
