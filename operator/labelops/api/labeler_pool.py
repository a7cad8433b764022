"""LabelerPool (labelops.dev/v1alpha1): one workforce shared by many campaigns.

Who the labelers are and how they sign in (an OIDC issuer, or a tokens Secret for small
setups), what they can do (skills, from identity-provider groups or listed per member) and
how much at once (capacity). Campaigns join with `spec.labelers.poolRef` (api/campaign.py),
naming the skills they need, their weight in the fair share and their priority tier; the
conventions are Kueue's (a ClusterQueue's cohort, weights and priorities), applied to people.

Like the campaign's, the CRD in crds/ is generated from these models (api/crd.py).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from labelops.api.campaign import (
    DNS_LABEL_PATTERN,
    Condition,
    LeasesPerLabeler,
    Model,
    SecretRef,
    cel,
    list_keyed_by,
    string_set,
)

KIND = "LabelerPool"
PLURAL = "labelerpools"
SINGULAR = "labelerpool"
SHORT_NAMES = ["lpool", "pool"]

# The router's Deployment and Service are named "<pool>-router" (a DNS label, 63 at most).
MAX_NAME_LENGTH = 48

# Keys are fetched from the issuer over the network: plain http would let anyone on the path
# hand the router their own signing keys. The verifier (identity/oidc.py) makes the one
# exception for loopback, which never leaves the host.
ISSUER_PATTERN = r"^https://[^\s/?#]+(/[^\s?#]*)?$"
# The name of a claim in the identity provider's tokens.
ClaimName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9_.:/-]+$")]


class OidcIdentity(Model):
    issuer: str = Field(
        max_length=2048,
        pattern=ISSUER_PATTERN,
        description="The identity provider's issuer URL (https): its "
        "/.well-known/openid-configuration names the JWKS the tokens are verified against, "
        "and tokens must carry it as `iss`.",
    )
    audience: str = Field(
        min_length=1,
        max_length=2048,
        description="The `aud` tokens must carry (the client id registered for labelops).",
    )
    username_claim: ClaimName = Field(
        default="sub",
        description="Claim whose value is the labeler id (e.g. email; sub by default).",
    )
    groups_claim: ClaimName = Field(
        default="groups",
        description="Claim listing the labeler's groups (skills are granted by group).",
    )


class TokensIdentity(Model):
    secret_ref: SecretRef = Field(
        description="Secret whose data keys are labeler ids and values their bearer tokens; "
        "it must be labeled labelops.dev/pool=<this pool's name>."
    )


_ONE_IDENTITY = (
    "identity needs exactly one of identity.oidc {issuer, audience} (single sign-on) or "
    "identity.tokens {secretRef} (a tokens Secret)"
)


class PoolIdentity(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [cel("has(self.oidc) != has(self.tokens)", _ONE_IDENTITY)]
        }
    )

    oidc: OidcIdentity | None = Field(
        default=None, description="Sign in with the company's identity provider."
    )
    tokens: TokensIdentity | None = Field(
        default=None, description="Bearer tokens from a Secret, for small setups."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> PoolIdentity:
        if (self.oidc is None) == (self.tokens is None):
            raise ValueError(_ONE_IDENTITY)
        return self


class Skill(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "(has(self.groups) && size(self.groups) > 0) || "
                    "(has(self.members) && size(self.members) > 0)",
                    "skills[].groups or skills[].members must list at least one group or "
                    "labeler id: a skill nobody has would starve every campaign requiring it",
                )
            ]
        }
    )

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=DNS_LABEL_PATTERN,
        description="The skill campaigns require (poolRef.requiredSkills), e.g. python.",
    )
    groups: list[str] = string_set(
        "Identity-provider groups whose members have the skill.", most=1000
    )
    members: list[str] = string_set(
        "Labeler ids with the skill, whatever their groups.", most=10000
    )


class PoolCapacity(Model):
    max_leases_per_labeler: LeasesPerLabeler = Field(
        default=5,
        description="Tasks a labeler may hold at once across all the pool's campaigns.",
    )


class LabelerPoolSpec(Model):
    identity: PoolIdentity = Field(description="How the pool's labelers sign in.")
    skills: list[Skill] = Field(
        default_factory=list,
        max_length=1000,
        description="What the labelers can do; a campaign's requiredSkills name these.",
        json_schema_extra=list_keyed_by("name"),
    )
    capacity: PoolCapacity = Field(default_factory=PoolCapacity)


# --- status -------------------------------------------------------------------------


class PoolCampaignStatus(Model):
    name: str = Field(max_length=253, description="The campaign (same namespace).")
    priority: int = Field(default=0, description="Its tier: higher tiers are served first.")
    weight: int = Field(default=1, description="Its weight in the fair share of its tier.")
    nominal_share: float | None = Field(
        default=None,
        description="weight / sum of the weights of its tier's campaigns with work (0-1).",
    )
    actual_share: float | None = Field(
        default=None, description="Its share of the labels served over the decaying window."
    )
    labelers_active: int = Field(default=0, description="Labelers holding its tasks.")
    pending_items: int | None = Field(default=None, description="Items still to label.")


class LabelerPoolStatus(Model):
    observed_generation: int | None = None
    campaigns: list[PoolCampaignStatus] = Field(
        default_factory=list,
        json_schema_extra=list_keyed_by("name"),
    )
    active_labelers: int = Field(default=0, description="Labelers seen in the last window.")
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra=list_keyed_by("type"),
    )
