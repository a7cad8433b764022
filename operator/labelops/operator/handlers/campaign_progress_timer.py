"""Progress of running campaigns: an O(1) read from the campaign's schema every few seconds
(less often while nothing moves), written to status only when it changed."""

from __future__ import annotations

from typing import Any

import kopf

from labelops.api.campaign import GROUP, PLURAL, VERSION
from labelops.operator.metrics import measured
from labelops.operator.progress_math import ACTIVE_READ_INTERVAL
from labelops.operator.tracking import track_progress


@kopf.timer(
    GROUP,
    VERSION,
    PLURAL,
    id="campaign-progress",
    interval=ACTIVE_READ_INTERVAL.total_seconds(),
    initial_delay=1.0,
)
async def progress(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    with measured("progress"):
        await track_progress(memo.context, body)
