"""Every campaign event, handed to the status writer as the newest copy of the campaign, so
that writes and watches read it from memory instead of the API server (status_writer.py).
Costs no request: Kopf already watches campaigns, and an event handler patches nothing."""

from __future__ import annotations

from typing import Any

import kopf

from labelops.api.campaign import GROUP, PLURAL, VERSION

CAMPAIGN_WATCH = "campaign-seen"


@kopf.on.event(GROUP, VERSION, PLURAL, id=CAMPAIGN_WATCH)
async def on_campaign(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        memo.context.status.unseen_campaign(body.metadata.namespace, body.metadata.name)
        return
    memo.context.status.seen_campaign(body)
