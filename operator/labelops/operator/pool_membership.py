"""A campaign's side of its LabelerPool (spec.labelers.poolRef): which labelers its workers
accept and how they know the pool's router. The caller holds the campaign's lock.

  - tokens pool: the digests of the pool's tokens Secret (opted in with labelops.dev/pool),
    only of the labelers holding every skill the campaign requires;
  - OIDC pool: no labeler digests; the workers verify the issuer's JWTs themselves and
    check the required skills (pool_plan.member_worker_env);
  - either way, the SHA-256 of the campaign's key in Secret `<pool>-router` as the service
    "router" (store.labeler_tokens.replace_service_digests).

Both reconcile.converge_workers (every pass) and the pool's pass (handlers/pool_reconcile.py,
within seconds of a change of the pool, its tokens Secret or its router Secret) call it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from labelops.api.campaign import GROUP, VERSION, CampaignSpec
from labelops.api.labeler_pool import KIND as POOL_KIND
from labelops.api.labeler_pool import LabelerPoolSpec
from labelops.api.pool_router import ROUTER_SERVICE
from labelops.operator import plan, pool_plan
from labelops.operator.conditions import WORKERS_READY, Reason, Verdict
from labelops.operator.context import OperatorContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Membership:
    """problem: why the workers cannot serve yet (WorkersReady False), else None; env: what
    the worker containers get for the pool."""

    problem: Verdict | None = None
    env: list[dict[str, Any]] = field(default_factory=list)


async def _write(
    ctx: OperatorContext,
    ref: plan.CampaignRef,
    labelers: Mapping[str, bytes],
    services: Mapping[str, bytes],
) -> None:
    names = ref.names
    changes = await ctx.postgres.replace_tokens(names.role, names.schema, labelers)
    if changes is not None and not changes.empty:
        log.info("%s: pool labeler tokens %s", names.key, changes.describe())
    if await ctx.postgres.replace_services(names.role, names.schema, services):
        log.info("%s: router service token now %s", names.key, sorted(services) or "none")


async def sync_member(
    ctx: OperatorContext, ref: plan.CampaignRef, spec: CampaignSpec
) -> Membership:
    pool_ref = spec.labelers.pool_ref
    assert pool_ref is not None, "sync_member is for campaigns with spec.labelers.poolRef"
    body = await ctx.kube.get(f"{GROUP}/{VERSION}", POOL_KIND, ref.namespace, pool_ref.name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        await _write(ctx, ref, {}, {})
        return Membership(
            Verdict.false(
                WORKERS_READY,
                Reason.POOL_NOT_FOUND,
                f"spec.labelers.poolRef.name: LabelerPool {ref.namespace}/{pool_ref.name} not "
                "found; create it (kind LabelerPool) or name an existing pool",
            )
        )
    try:
        pool_spec = LabelerPoolSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        await _write(ctx, ref, {}, {})
        first = err.errors()[0]
        where = "spec." + ".".join(str(p) for p in first["loc"])
        return Membership(
            Verdict.false(
                WORKERS_READY,
                Reason.INVALID_SPEC,
                f"LabelerPool {pool_ref.name}: {where}: {first['msg']}",
            )
        )
    unknown = pool_plan.unknown_skill_problem(pool_ref.name, pool_spec, pool_ref)
    if unknown is not None:
        await _write(ctx, ref, {}, {})
        return Membership(Verdict.false(WORKERS_READY, Reason.UNKNOWN_SKILL, unknown))
    labelers: dict[str, bytes] = {}
    secret_name = pool_plan.tokens_secret_name(pool_spec)
    if secret_name is not None:
        secret = await ctx.kube.get("v1", "Secret", ref.namespace, secret_name)
        tokens = pool_plan.pool_tokens(pool_ref.name, ref.namespace, pool_spec, secret)
        labelers = pool_plan.member_digests(tokens, pool_spec, pool_ref)
    router = await ctx.kube.get("v1", "Secret", ref.namespace, pool_plan.router_name(pool_ref.name))
    token = pool_plan.route_token_of(router, ref.name)
    services = {ROUTER_SERVICE: pool_plan.service_digest(token)} if token else {}
    await _write(ctx, ref, labelers, services)
    return Membership(None, pool_plan.member_worker_env(pool_spec, pool_ref))
