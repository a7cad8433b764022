"""Reconcile a campaign when it is created, when its spec changes, when the operator starts,
and every few minutes in case something drifted outside the operator's view (a topic
deleted by hand, a role's connection limit changed), each campaign at its own place in the
period (resync.py). A resync re-sends a Kubernetes object only if what it should be changed,
or its last apply is 15 minutes old (clients/kube.py REAPPLY_SECONDS): a deleted worker
Deployment or an edit of its spec is seen by the watch and repaired at once, another child
deleted by hand within 15 minutes."""

from __future__ import annotations

from typing import Any

import kopf

from labelops.api.campaign import GROUP, PLURAL, VERSION
from labelops.clients.kube import reusing
from labelops.operator.metrics import measured
from labelops.operator.plan import CampaignRef
from labelops.operator.reconcile import reconcile
from labelops.operator.resync import RESYNC_SECONDS, first_resync_delay, resync_due

RESYNC_TIMER = "campaign-resync"
# An unexpected exception (a bug, an API server hiccup) is retried this often.
UNEXPECTED_ERROR_BACKOFF = 10.0


@kopf.on.create(GROUP, VERSION, PLURAL, id="campaign-create", backoff=UNEXPECTED_ERROR_BACKOFF)
async def on_create(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    with measured("create"):
        await reconcile(memo.context, body, retry, created=True)


@kopf.on.update(
    GROUP, VERSION, PLURAL, id="campaign-update", field="spec", backoff=UNEXPECTED_ERROR_BACKOFF
)
async def on_update(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    with measured("update"):
        await reconcile(memo.context, body, retry)


@kopf.on.resume(GROUP, VERSION, PLURAL, id="campaign-resume", backoff=UNEXPECTED_ERROR_BACKOFF)
async def on_resume(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    with measured("resume"):
        await reconcile(memo.context, body, retry)


def _resync_delay(meta: kopf.Meta, **_: Any) -> float:
    return first_resync_delay(str(meta.get("uid", "")))


@kopf.timer(
    GROUP,
    VERSION,
    PLURAL,
    id=RESYNC_TIMER,
    interval=RESYNC_SECONDS,
    initial_delay=_resync_delay,
    idle=RESYNC_SECONDS / 10,
)
async def resync(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if not resync_due(memo.context.since_last_pass(CampaignRef.from_body(body))):
        return
    # Nothing in the spec changed: Kubernetes objects applied unchanged within 15 minutes are
    # not sent again (clients/kube.py); Kafka and PostgreSQL are checked in full.
    with measured("resync"), reusing():
        await reconcile(memo.context, body)
