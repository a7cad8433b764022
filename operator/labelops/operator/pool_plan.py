"""What should exist for a LabelerPool: pure functions from the pool, its member campaigns
and the Secrets read for it to the router's objects, and what a member campaign's workers
are given. Nothing here performs I/O (handlers/pool_reconcile.py and reconcile.py do).

The router objects are all named `<pool>-router` and owned by the pool (ownerReferences),
so deleting the pool deletes them:
  - ConfigMap: RouterConfig (api/pool_router.py) as JSON;
  - Secret: one service token per member campaign (`campaign.<name>`, generated once and
    kept while the campaign stays a member) and, for a tokens pool, the labelers' digests;
  - Deployment running `labelops router`, hardened like the workers; Service port 80;
  - NetworkPolicy, when the operator writes campaigns' policies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from labelops.api.campaign import GROUP, VERSION, CampaignSpec, PoolRef
from labelops.api.labeler_pool import KIND as POOL_KIND
from labelops.api.labeler_pool import LabelerPoolSpec, Skill
from labelops.api.naming import CampaignNames
from labelops.api.pool_router import (
    ENV_LABELER_DIGESTS,
    ENV_OIDC_AUDIENCE,
    ENV_OIDC_GROUPS_CLAIM,
    ENV_OIDC_ISSUER,
    ENV_OIDC_USERNAME_CLAIM,
    ENV_REQUIRED_SKILLS,
    ENV_ROUTE_TOKEN_PREFIX,
    ENV_ROUTER_CONFIG,
    LABELER_DIGESTS_KEY,
    ROUTE_TOKEN_KEY_PREFIX,
    ROUTER_CONFIG_KEY,
    ROUTER_PORT,
    RoutedCampaign,
    RouterConfig,
)
from labelops.api.worker_configmap import WORKER_PORT
from labelops.operator import network_policy
from labelops.operator.plan import (
    CONFIG_HASH_ANNOTATION,
    _http_container_parts,
    _restricted_pod_spec,
    config_hash,
)
from labelops.operator.token_secret import read_token_secret
from labelops.routing.skills import skills_of
from labelops.store.labeler_tokens import token_digest

POOL_API_VERSION = f"{GROUP}/{VERSION}"
# The pool's tokens Secret must carry this label with the pool's name before the operator
# reads it (the campaign's opt-in, TOKEN_OPT_IN_LABEL, for the same confused-deputy reason).
POOL_OPT_IN_LABEL = f"{GROUP}/pool"
ROUTER_SERVICE_PORT = 80
# The router holds no state of its own but its in-memory fair-share history: small.
ROUTER_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"memory": "512Mi"},
}
HTTPS_PORT = 443


@dataclass(frozen=True)
class PoolObjectRef:
    """Which pool we act for: enough to name its children and to own them."""

    namespace: str
    name: str
    uid: str
    generation: int

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PoolObjectRef:
        meta = body["metadata"]
        return cls(meta["namespace"], meta["name"], meta["uid"], int(meta.get("generation", 1)))

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def router(self) -> str:
        return router_name(self.name)

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": POOL_API_VERSION,
            "kind": POOL_KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def selector_labels(self) -> dict[str, str]:
        return network_policy.router_selector_labels(self.name)

    def labels(self) -> dict[str, str]:
        return {
            **self.selector_labels(),
            "app.kubernetes.io/component": "router",
            "app.kubernetes.io/managed-by": "labelops",
            POOL_OPT_IN_LABEL: self.name,
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.router,
            "namespace": self.namespace,
            "labels": self.labels(),
            "ownerReferences": [self.owner_reference()],
        }


def router_name(pool: str) -> str:
    return f"{pool}-router"


@dataclass(frozen=True)
class Member:
    """A campaign of the pool's namespace whose spec.labelers.poolRef names the pool."""

    name: str
    ref: PoolRef
    pending_items: int | None = None


def members(pool: str, campaigns: Iterable[Mapping[str, Any]]) -> list[Member]:
    """The pool's member campaigns (sorted by name); campaigns being deleted have left, and
    a spec the API server let through but the models refuse is left to its own reconcile."""
    found = []
    for body in campaigns:
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        try:
            spec = CampaignSpec.model_validate(body.get("spec") or {})
        except ValidationError:
            continue
        ref = spec.labelers.pool_ref
        if ref is None or ref.name != pool:
            continue
        progress = (body.get("status") or {}).get("progress") or {}
        pending = None
        if "itemsTotal" in progress:
            pending = max(0, int(progress["itemsTotal"]) - int(progress.get("itemsCompleted", 0)))
        found.append(Member(meta["name"], ref, pending))
    return sorted(found, key=lambda m: m.name)


def campaign_url(namespace: str, campaign: str) -> str:
    worker = CampaignNames(namespace, campaign).worker
    return f"http://{worker}.{namespace}.svc:{WORKER_PORT}"


def router_config(
    pool: PoolObjectRef, spec: LabelerPoolSpec, joined: Sequence[Member]
) -> RouterConfig:
    return RouterConfig(
        pool=pool.name,
        namespace=pool.namespace,
        identity=spec.identity,
        skills=spec.skills,
        capacity=spec.capacity,
        campaigns=[
            RoutedCampaign(
                name=m.name,
                url=campaign_url(pool.namespace, m.name),
                priority=m.ref.priority,
                weight=m.ref.weight,
                required_skills=sorted(m.ref.required_skills),
            )
            for m in joined
        ],
    )


def router_config_json(config: RouterConfig) -> str:
    return json.dumps(config.model_dump(mode="json", by_alias=True), sort_keys=True, indent=2)


# --- skills ----------------------------------------------------------------------------


def unknown_skill_problem(pool: str, spec: LabelerPoolSpec, ref: PoolRef) -> str | None:
    """Why the campaign's required skills cannot be met by the pool, or None."""
    known = sorted(skill.name for skill in spec.skills)
    missing = sorted(set(ref.required_skills) - set(known))
    if not missing:
        return None
    offered = ", ".join(repr(s) for s in known) if known else "none"
    return (
        f"spec.labelers.poolRef.requiredSkills {missing[0]!r} is not a skill of LabelerPool "
        f"{pool!r} (its skills: {offered}); add it to the pool's spec.skills or remove it "
        "from the campaign"
    )


def skilled(labelers: Iterable[str], skills: Sequence[Skill], required: Iterable[str]) -> set[str]:
    """The labelers (of a tokens pool: no groups) holding every required skill."""
    needed = frozenset(required)
    return {labeler for labeler in labelers if needed <= skills_of(labeler, (), skills)}


def required_skills_json(spec: LabelerPoolSpec, ref: PoolRef) -> str:
    """LABELOPS_REQUIRED_SKILLS for an OIDC pool's member workers (contract.md)."""
    wanted = set(ref.required_skills)
    return json.dumps(
        [
            s.model_dump(mode="json", by_alias=True)
            for s in sorted(spec.skills, key=lambda s: s.name)
            if s.name in wanted
        ],
        sort_keys=True,
    )


# --- the pool's tokens Secret ------------------------------------------------------------


def tokens_secret_name(spec: LabelerPoolSpec) -> str | None:
    tokens = spec.identity.tokens
    return tokens.secret_ref.name if tokens is not None else None


def pool_tokens_problem(
    pool: str, namespace: str, spec: LabelerPoolSpec, secret: Mapping[str, Any] | None
) -> str | None:
    """Why the pool's tokens Secret may not be read for the pool, or None."""
    name = tokens_secret_name(spec)
    if name is None:
        return None
    if secret is None:
        return (
            f"spec.identity.tokens.secretRef: Secret {namespace}/{name} not found; create it "
            f"with one key per labeler id and the labeler's token as value, labeled "
            f"{POOL_OPT_IN_LABEL}={pool}"
        )
    labels = (secret.get("metadata") or {}).get("labels") or {}
    if labels.get("app.kubernetes.io/managed-by") == "labelops":
        return (
            f"spec.identity.tokens.secretRef: Secret {namespace}/{name} is written by the "
            "operator (app.kubernetes.io/managed-by=labelops), not a tokens Secret; name a "
            "Secret of your own"
        )
    found = labels.get(POOL_OPT_IN_LABEL)
    if found == pool:
        return None
    has = "has no such label" if found is None else f"is labeled for {found!r}"
    return (
        f"spec.identity.tokens.secretRef: Secret {namespace}/{name} {has}; only a Secret "
        f"labeled {POOL_OPT_IN_LABEL}={pool} is read for this pool "
        f"(kubectl label secret {name} {POOL_OPT_IN_LABEL}={pool})"
    )


@dataclass(frozen=True)
class PoolTokens:
    """The pool's labelers' digests (labeler -> sha256) and what a person must fix."""

    digests: Mapping[str, bytes]
    problem: str | None = None


def pool_tokens(
    pool: str, namespace: str, spec: LabelerPoolSpec, secret: Mapping[str, Any] | None
) -> PoolTokens:
    """The digests a tokens pool's Secret allows; none when it is missing or not opted in."""
    problem = pool_tokens_problem(pool, namespace, spec, secret)
    if problem is not None or secret is None:
        return PoolTokens({}, problem)
    reading = read_token_secret(namespace, secret)
    message = reading.problem
    if message is not None:
        message = message.replace("spec.labelers.tokenSecretRef", "spec.identity.tokens.secretRef")
    return PoolTokens(dict(reading.digests), message)


def member_digests(tokens: PoolTokens, spec: LabelerPoolSpec, ref: PoolRef) -> dict[str, bytes]:
    """The digests a member campaign's workers accept: labelers with all its skills."""
    allowed = skilled(tokens.digests, spec.skills, ref.required_skills)
    return {labeler: d for labeler, d in tokens.digests.items() if labeler in allowed}


def labeler_digests_json(digests: Mapping[str, bytes]) -> str:
    return json.dumps({k: v.hex() for k, v in sorted(digests.items())}, sort_keys=True)


# --- the router's Secret -----------------------------------------------------------------


def route_token_key(campaign: str) -> str:
    return f"{ROUTE_TOKEN_KEY_PREFIX}{campaign}"


def decoded(secret: Mapping[str, Any] | None) -> dict[str, str]:
    """A Secret's data as text; entries that are not base64 text are dropped."""
    out = {}
    for key, value in ((secret or {}).get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value or "", validate=True).decode()
        except (binascii.Error, ValueError):
            continue
    return out


def route_tokens(
    existing: Mapping[str, str], joined: Sequence[Member], new_token: Callable[[], str]
) -> dict[str, str]:
    """campaign -> its router service token: kept for members that had one, new for new
    members, dropped for campaigns that left."""
    tokens = {}
    for member in joined:
        kept = existing.get(route_token_key(member.name))
        tokens[member.name] = kept if kept else new_token()
    return tokens


def route_token_of(router_secret: Mapping[str, Any] | None, campaign: str) -> str | None:
    return decoded(router_secret).get(route_token_key(campaign)) or None


def service_digest(token: str) -> bytes:
    return token_digest(token.encode())


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def router_secret(
    pool: PoolObjectRef, tokens: Mapping[str, str], labeler_digests: str | None
) -> dict[str, Any]:
    data = {route_token_key(c): _b64(t) for c, t in sorted(tokens.items())}
    if labeler_digests is not None:
        data[LABELER_DIGESTS_KEY] = _b64(labeler_digests)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": pool.metadata(),
        "type": "Opaque",
        "data": data,
    }


def router_config_map(pool: PoolObjectRef, config: RouterConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": pool.metadata(),
        "data": {ROUTER_CONFIG_KEY: router_config_json(config)},
    }


def route_token_env(campaign: str) -> str:
    """LABELOPS_ROUTE_TOKEN_<campaign>: the campaign name as it is (names with '-' are
    valid environment variable names for Kubernetes and for os.environ)."""
    return f"{ENV_ROUTE_TOKEN_PREFIX}{campaign}"


def router_deployment(
    pool: PoolObjectRef,
    image: str,
    config: RouterConfig,
    secret: Mapping[str, Any],
) -> dict[str, Any]:
    """`labelops router`, one replica (its fair-share history is in memory), rolled when the
    config or the Secret changes (the config-hash annotation)."""
    env: list[dict[str, Any]] = [
        {
            "name": ENV_ROUTER_CONFIG,
            "valueFrom": {"configMapKeyRef": {"name": pool.router, "key": ROUTER_CONFIG_KEY}},
        }
    ]
    for campaign in config.campaigns:
        env.append(
            {
                "name": route_token_env(campaign.name),
                "valueFrom": {
                    "secretKeyRef": {"name": pool.router, "key": route_token_key(campaign.name)}
                },
            }
        )
    if config.identity.tokens is not None:
        env.append(
            {
                "name": ENV_LABELER_DIGESTS,
                "valueFrom": {"secretKeyRef": {"name": pool.router, "key": LABELER_DIGESTS_KEY}},
            }
        )
    container: dict[str, Any] = {
        "name": "router",
        "image": image,
        "command": ["labelops", "router"],
        "env": env,
        **_http_container_parts(ROUTER_PORT, ready_period=5, live_period=10),
        "resources": ROUTER_RESOURCES,
    }
    pod_hash = config_hash(router_config_json(config), json.dumps(secret["data"], sort_keys=True))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": pool.metadata(),
        "spec": {
            "replicas": 1,
            # Two routers would each keep their own fair-share history and lease counts.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": pool.selector_labels()},
            "template": {
                "metadata": {
                    "labels": pool.labels(),
                    "annotations": {CONFIG_HASH_ANNOTATION: pod_hash},
                },
                "spec": _restricted_pod_spec(container, [{"name": "tmp", "emptyDir": {}}]),
            },
        },
    }


def router_service(pool: PoolObjectRef) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": pool.metadata(),
        "spec": {
            "type": "ClusterIP",
            "selector": pool.selector_labels(),
            "ports": [{"name": "http", "port": ROUTER_SERVICE_PORT, "targetPort": "http"}],
        },
    }


def router_network_policy(
    pool: PoolObjectRef,
    spec: LabelerPoolSpec,
    joined: Sequence[Member],
    peers: network_policy.NetworkPolicyPeers | None,
) -> dict[str, Any] | None:
    """Ingress on the router port (from the `api` peers, scrapers too once restricted);
    egress to the member campaigns' workers, DNS, and https for an OIDC issuer's keys."""
    if peers is None:
        return None
    callers = peers.api + peers.metrics if peers.api else ()
    workers: dict[str, Any] = {
        "ports": [{"port": WORKER_PORT, "protocol": "TCP"}],
        "to": [
            {
                "podSelector": {
                    "matchLabels": {"app.kubernetes.io/name": "labelops-worker"},
                    "matchExpressions": [
                        {
                            "key": "app.kubernetes.io/instance",
                            "operator": "In",
                            "values": [m.name for m in joined] or ["-none-"],
                        }
                    ],
                }
            }
        ],
    }
    egress = [workers, network_policy._dns(peers)]
    if spec.identity.oidc is not None:
        egress.append({"ports": [{"port": HTTPS_PORT, "protocol": "TCP"}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": pool.metadata(),
        "spec": {
            "podSelector": {"matchLabels": pool.selector_labels()},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                network_policy._rule("from", callers, [{"port": ROUTER_PORT, "protocol": "TCP"}])
            ],
            "egress": egress,
        },
    }


# --- a member campaign's workers -----------------------------------------------------------


def member_worker_env(spec: LabelerPoolSpec, ref: PoolRef) -> list[dict[str, Any]]:
    """What a member campaign's worker containers get beyond a campaign's own: for an OIDC
    pool, the issuer (labelers may sign in directly) and the skills the campaign requires."""
    oidc = spec.identity.oidc
    if oidc is None:
        return []
    values = {
        ENV_OIDC_ISSUER: oidc.issuer,
        ENV_OIDC_AUDIENCE: oidc.audience,
        ENV_OIDC_USERNAME_CLAIM: oidc.username_claim,
        ENV_OIDC_GROUPS_CLAIM: oidc.groups_claim,
        ENV_REQUIRED_SKILLS: required_skills_json(spec, ref),
    }
    return [{"name": k, "value": v} for k, v in values.items()]


def fingerprint(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()
