"""Reconcile a LabelerPool: its router objects (pool_plan.py), its members' labeler and
service digests (pool_membership.py), and its status (pool_status.py).

One pass on create, spec change and resume, and every POOL_PERIOD_SECONDS from a timer, so a
campaign joining or leaving, or a change of the pool's tokens Secret, reaches the router
and the workers within seconds. Objects are applied only when what is desired changed since
the last apply (or every REAPPLY_SECONDS, repairing drift); the status is patched only when
it differs from the live one. The pool handler is the status's one writer.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from typing import Any

import kopf
from pydantic import ValidationError

from labelops.api.campaign import GROUP, VERSION, CampaignSpec
from labelops.api.campaign import KIND as CAMPAIGN_KIND
from labelops.api.labeler_pool import KIND as POOL_KIND
from labelops.api.labeler_pool import PLURAL, LabelerPoolSpec
from labelops.clients.errors import BackendUnavailable
from labelops.operator import plan, pool_plan, pool_status
from labelops.operator.conditions import Reason
from labelops.operator.context import OperatorContext
from labelops.operator.metrics import measured
from labelops.operator.pool_membership import sync_member

log = logging.getLogger(__name__)

POOL_TIMER = "labelerpool-timer"
POOL_PERIOD_SECONDS = 5.0
REAPPLY_SECONDS = 300.0
UNEXPECTED_ERROR_BACKOFF = 10.0

# pool key -> (fingerprint of the applied objects, when); campaign key -> fingerprint of
# what its membership was synced from.
_applied: dict[str, tuple[str, float]] = {}
_synced: dict[str, str] = {}


async def _usage(
    ctx: OperatorContext, namespace: str, joined: list[pool_plan.Member]
) -> dict[str, pool_status.CampaignUsage]:
    found = {}
    for member in joined:
        schema = plan.CampaignRef(namespace, member.name, "", 0).names.schema
        try:
            read = await ctx.postgres.read_pool_usage(
                schema, pool_status.HALF_LIFE_SECONDS, pool_status.WINDOW_SECONDS
            )
        except BackendUnavailable as err:
            log.warning("%s/%s: pool usage not read: %s", namespace, member.name, err)
            continue
        if read is not None:
            found[member.name] = pool_status.CampaignUsage(read[0], read[1])
    return found


async def pool_pass(ctx: OperatorContext, body: kopf.Body | dict[str, Any]) -> None:
    pool = pool_plan.PoolObjectRef.from_body(body)
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return
    try:
        spec = LabelerPoolSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        first = err.errors()[0]
        where = "spec." + ".".join(str(p) for p in first["loc"])
        status = pool_status.pool_status(
            body.get("status") or {},
            pool.generation,
            [],
            {},
            pool_status.PoolProblem(Reason.INVALID_SPEC, f"{where}: {first['msg']}"),
            None,
            dt.datetime.now(dt.UTC),
        )
        await _write_status(ctx, pool, body, status)
        return
    campaigns = await ctx.kube.list(f"{GROUP}/{VERSION}", CAMPAIGN_KIND, pool.namespace)
    joined = pool_plan.members(pool.name, campaigns)
    tokens_name = pool_plan.tokens_secret_name(spec)
    tokens_secret = (
        await ctx.kube.get("v1", "Secret", pool.namespace, tokens_name) if tokens_name else None
    )
    tokens = pool_plan.pool_tokens(pool.name, pool.namespace, spec, tokens_secret)
    router_secret = await ctx.kube.get("v1", "Secret", pool.namespace, pool.router)
    route_tokens = pool_plan.route_tokens(
        pool_plan.decoded(router_secret), joined, lambda: secrets.token_urlsafe(32)
    )
    config = pool_plan.router_config(pool, spec, joined)
    secret = pool_plan.router_secret(
        pool,
        route_tokens,
        pool_plan.labeler_digests_json(tokens.digests) if tokens_name else None,
    )
    desired = [
        pool_plan.router_config_map(pool, config),
        secret,
        pool_plan.router_service(pool),
        pool_plan.router_deployment(pool, ctx.workers.default_image, config, secret),
    ]
    policy = pool_plan.router_network_policy(pool, spec, joined, ctx.workers.network_policy_peers)
    if policy is not None:
        desired.append(policy)
    marker = pool_plan.fingerprint(*(repr(obj) for obj in desired))
    last = _applied.get(pool.key)
    now = time.monotonic()
    if last is None or last[0] != marker or now - last[1] > REAPPLY_SECONDS:
        for obj in desired:
            await ctx.kube.apply(obj)
        _applied[pool.key] = (marker, now)
        log.info("%s: router objects applied (%d campaigns)", pool.key, len(joined))
    # Members' digests, when anything they come from changed.
    by_name = {(c.get("metadata") or {}).get("name"): c for c in campaigns}
    for member in joined:
        campaign = by_name[member.name]
        ref = plan.CampaignRef.from_body(campaign)
        source = pool_plan.fingerprint(
            marker, route_tokens[member.name], pool_plan.labeler_digests_json(tokens.digests)
        )
        if _synced.get(ref.names.key) == source:
            continue
        try:
            spec_c = CampaignSpec.model_validate(campaign.get("spec") or {})
            async with ctx.lock(ref):
                await sync_member(ctx, ref, spec_c)
            _synced[ref.names.key] = source
        except BackendUnavailable as err:
            log.warning("%s: pool digests not written: %s", ref.names.key, err)
    problem = (
        pool_status.PoolProblem(
            Reason.SECRET_NOT_FOUND if tokens_secret is None else Reason.TOKEN_SECRET_NOT_OPTED_IN,
            tokens.problem,
        )
        if tokens.problem is not None and not tokens.digests
        else None
    )
    deployment = await ctx.kube.get("apps/v1", "Deployment", pool.namespace, pool.router)
    status = pool_status.pool_status(
        body.get("status") or {},
        pool.generation,
        joined,
        await _usage(ctx, pool.namespace, joined),
        problem,
        pool_status.router_readiness(deployment),
        dt.datetime.now(dt.UTC),
    )
    await _write_status(ctx, pool, body, status)


async def _write_status(
    ctx: OperatorContext,
    pool: pool_plan.PoolObjectRef,
    body: kopf.Body | dict[str, Any],
    status: dict[str, Any],
) -> None:
    if dict(body.get("status") or {}) == status:
        return
    await ctx.kube.patch_status(f"{GROUP}/{VERSION}", POOL_KIND, pool.namespace, pool.name, status)


@kopf.on.create(GROUP, VERSION, PLURAL, id="labelerpool-create", backoff=UNEXPECTED_ERROR_BACKOFF)
async def on_create(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    with measured("pool-create"):
        await pool_pass(memo.context, body)


@kopf.on.update(
    GROUP, VERSION, PLURAL, id="labelerpool-update", field="spec", backoff=UNEXPECTED_ERROR_BACKOFF
)
async def on_update(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    with measured("pool-update"):
        await pool_pass(memo.context, body)


@kopf.timer(GROUP, VERSION, PLURAL, id=POOL_TIMER, interval=POOL_PERIOD_SECONDS)
async def pool_timer(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    with measured("pool-timer"):
        await pool_pass(memo.context, body)
