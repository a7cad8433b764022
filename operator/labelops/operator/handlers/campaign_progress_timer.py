"""Progress of running campaigns: an O(1) read from the campaign's schema, written to status
only when it changed.

The timer ticks at the labeling pace for every campaign, but a tick reads Postgres only when
the campaign's adaptive schedule says so (progress_interval): every 5 s while it is being
labeled, backing off to once a minute while idle, every 5 minutes once Completed. A tick that
is not due costs no I/O.
"""

from __future__ import annotations

from typing import Any

import kopf

from labelops.api.campaign import GROUP, PLURAL, VERSION
from labelops.operator.metrics import measured
from labelops.operator.progress_interval import LABELING_INTERVAL
from labelops.operator.tracking import track_progress

PROGRESS_TIMER = "campaign-progress"


@kopf.timer(
    GROUP,
    VERSION,
    PLURAL,
    id=PROGRESS_TIMER,
    interval=LABELING_INTERVAL.total_seconds(),
    initial_delay=1.0,
)
async def progress(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    with measured("progress"):
        await track_progress(memo.context, body)
