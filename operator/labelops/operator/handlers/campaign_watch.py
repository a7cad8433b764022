"""Every campaign event, handed to the status writer as the newest copy of the campaign, so
that writes and watches read it from memory instead of the API server (status_writer.py).
Costs no request: Kopf already watches campaigns, and an event handler patches nothing.
The first event's handler context is kept too (context.py: handler_context) for the
progress loop's reads, which post Events through Kopf."""

from __future__ import annotations

import contextvars
from typing import Any

import kopf

from labelops.api.campaign import GROUP, PLURAL, VERSION

CAMPAIGN_WATCH = "campaign-seen"


@kopf.on.event(GROUP, VERSION, PLURAL, id=CAMPAIGN_WATCH)
async def on_campaign(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if memo.context.handler_context is None:
        memo.context.handler_context = contextvars.copy_context()
    if type == "DELETED":
        memo.context.status.unseen_campaign(body.metadata.namespace, body.metadata.name)
        return
    memo.context.status.seen_campaign(body)
