"""Deletion of a campaign: keep or drop its Kafka topics, Postgres schema and role.

Kubernetes children (Secret, ConfigMap, Deployment, Service, ResourceQuota) carry
ownerReferences and are removed by the garbage collector either way.
"""

from __future__ import annotations

from typing import Any

import kopf

from labelops.api.campaign import GROUP, PLURAL, VERSION
from labelops.operator.metrics import measured
from labelops.operator.reclaim import reclaim


@kopf.on.delete(GROUP, VERSION, PLURAL, id="campaign-reclaim", backoff=10.0)
async def on_delete(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    with measured("delete"):
        await reclaim(memo.context, body, retry)
