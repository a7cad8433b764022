"""Keep a campaign's labeler token digests (in its schema) those of its tokens Secret.

Two paths write them, under the campaign's lock so they take turns:
  - every reconcile pass, before the worker Deployment is applied (workers start with the
    tokens in place; a resync repairs a missed Secret event);
  - the watch on tokens Secrets (handlers/tokens_secret_watch.py), within a second of a
    change, so a rotated or removed token is refused within seconds, not at the next pass.
A Secret that is gone, or no longer opted in for the campaign, leaves nobody signed in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from labelops.api.campaign import CampaignSpec
from labelops.clients.errors import BackendUnavailable
from labelops.operator import plan
from labelops.operator.context import OperatorContext
from labelops.operator.token_secret import read_token_secret

log = logging.getLogger(__name__)


async def sync_tokens(
    ctx: OperatorContext,
    ref: plan.CampaignRef,
    spec: CampaignSpec,
    secret: Mapping[str, Any] | None,
) -> str | None:
    """Write the digests the campaign's tokens Secret (None: missing) allows; returns the
    Secret's problem a person must fix, or None. The caller holds the campaign's lock."""
    reading = (
        read_token_secret(ref.namespace, secret)
        if secret is not None and plan.token_secret_problem(ref, spec, secret) is None
        else None
    )
    digests = reading.digests if reading is not None else {}
    names = ref.names
    changes = await ctx.postgres.replace_tokens(names.role, names.schema, digests)
    if changes is not None and not changes.empty:
        log.info("%s: labeler tokens %s", names.key, changes.describe())
    return reading.problem if reading is not None else None


async def tokens_secret_changed(
    ctx: OperatorContext, secret: Mapping[str, Any], deleted: bool
) -> None:
    """A Secret labeled labelops.dev/campaign=<name> changed: if it is that campaign's
    tokens Secret, write its digests now."""
    metadata = secret.get("metadata") or {}
    namespace, campaign = (
        metadata.get("namespace"),
        (metadata.get("labels") or {}).get(plan.TOKEN_OPT_IN_LABEL),
    )
    if not namespace or not campaign:
        return
    # A campaign this process has not seen yet gets a full pass (create or resume) that
    # writes the digests: nothing to do here, and nothing to ask the API server.
    body = ctx.status.known_campaign(namespace, campaign)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return
    try:
        spec = CampaignSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return  # the reconcile pass reports it
    wanted = spec.labelers.token_secret_ref
    if wanted is None or wanted.name != metadata.get("name"):
        return
    ref = plan.CampaignRef.from_body(body)
    async with ctx.lock(ref):
        try:
            problem = await sync_tokens(ctx, ref, spec, None if deleted else secret)
        except BackendUnavailable as err:
            # The resync pass writes them once Postgres is back (and the workers cannot
            # serve labelers meanwhile anyway).
            log.warning("%s: labeler tokens not written: %s", ref.names.key, err)
            return
    if problem is not None:
        log.warning("%s: %s", ref.names.key, problem)
