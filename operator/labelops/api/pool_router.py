"""What a LabelerPool's router is told, and the names it and the workers share.

The operator (operator/pool_*.py) writes RouterConfig as JSON into the ConfigMap
`<pool>-router` (key ROUTER_CONFIG_KEY) and the router Deployment reads it from the
environment (ENV_ROUTER_CONFIG); `labelops router` (router/) parses it with this model. The
service credentials the router presents to each campaign's worker are in the Secret
`<pool>-router`: key `campaign.<campaign>` holds that campaign's token, reaching the router
as ENV_ROUTE_TOKEN_PREFIX + campaign; key LABELER_DIGESTS_KEY holds, for a pool that signs in
with a tokens Secret, the labelers' SHA-256 token digests (hex) as JSON, never the tokens.

The worker knows the router by the digest of that service credential, kept in the campaign's
schema like the labelers' (store/labeler_tokens.py); a request so authenticated names the
labeler it is for in ON_BEHALF_OF_HEADER, which the worker refuses from anyone else.

A task id through the router is `<campaign>:<item id>` (TASK_ID_SEPARATOR): campaign names
are DNS labels, so the first separator always ends the campaign, whatever the item id holds.
"""

from __future__ import annotations

from pydantic import Field

from labelops.api.campaign import Model
from labelops.api.labeler_pool import PoolCapacity, PoolIdentity, Skill
from labelops.api.worker_configmap import WORKER_PORT

ROUTER_PORT = WORKER_PORT
ROUTER_CONFIG_KEY = "router.json"
ENV_ROUTER_CONFIG = "LABELOPS_ROUTER_CONFIG"
ENV_ROUTE_TOKEN_PREFIX = "LABELOPS_ROUTE_TOKEN_"
ENV_LABELER_DIGESTS = "LABELOPS_LABELER_DIGESTS"
LABELER_DIGESTS_KEY = "labelers.json"
ROUTE_TOKEN_KEY_PREFIX = "campaign."
# The service whose digest a campaign's schema keeps for its pool's router.
ROUTER_SERVICE = "router"
ON_BEHALF_OF_HEADER = "Labelops-Labeler"
TASK_ID_SEPARATOR = ":"

# Set on a pool campaign's workers, so labelers can also sign in to them directly.
ENV_OIDC_ISSUER = "LABELOPS_OIDC_ISSUER"
ENV_OIDC_AUDIENCE = "LABELOPS_OIDC_AUDIENCE"
ENV_OIDC_USERNAME_CLAIM = "LABELOPS_OIDC_USERNAME_CLAIM"
ENV_OIDC_GROUPS_CLAIM = "LABELOPS_OIDC_GROUPS_CLAIM"
# JSON list of the pool's Skill definitions the campaign requires (poolRef.requiredSkills):
# a labeler signed in directly must have all of them.
ENV_REQUIRED_SKILLS = "LABELOPS_REQUIRED_SKILLS"


class RoutedCampaign(Model):
    name: str = Field(min_length=1, max_length=63, description="The campaign (pool's namespace).")
    url: str = Field(
        description="Base URL of its workers' Service, e.g. http://c-worker.ns.svc:8080."
    )
    priority: int = 0
    weight: int = Field(default=1, ge=1)
    required_skills: list[str] = Field(default_factory=list)


class RouterConfig(Model):
    pool: str
    namespace: str
    identity: PoolIdentity
    skills: list[Skill] = Field(default_factory=list)
    capacity: PoolCapacity = Field(default_factory=PoolCapacity)
    campaigns: list[RoutedCampaign] = Field(default_factory=list)


def task_id(campaign: str, item_id: str) -> str:
    return f"{campaign}{TASK_ID_SEPARATOR}{item_id}"


def split_task_id(value: str) -> tuple[str, str] | None:
    """(campaign, item id), or None when the value carries no campaign."""
    campaign, separator, item_id = value.partition(TASK_ID_SEPARATOR)
    if not separator or not campaign or not item_id:
        return None
    return campaign, item_id
