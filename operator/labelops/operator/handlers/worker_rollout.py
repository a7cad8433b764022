"""Watch the worker Deployments the operator created, so WorkersReady (and with it Ready)
turns True when the pods become available, not at the next reconcile."""

from __future__ import annotations

from typing import Any

import kopf

from labelops.api.campaign import GROUP, KIND
from labelops.operator.metrics import measured
from labelops.operator.tracking import deployment_changed

CAMPAIGN_LABEL = f"{GROUP}/campaign"
WORKER_ROLLOUT = "worker-rollout"


@kopf.on.event(
    "apps", "v1", "deployments", id=WORKER_ROLLOUT, labels={CAMPAIGN_LABEL: kopf.PRESENT}
)
async def on_deployment(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    owner = next(
        (
            ref["name"]
            for ref in body.metadata.get("ownerReferences") or []
            if ref.get("kind") == KIND and ref.get("controller")
        ),
        None,
    )
    if owner is None:
        return
    with measured("worker-rollout"):
        await deployment_changed(memo.context, body, owner, deleted=type == "DELETED")
