"""Which labeler blocks still need an Event: a watermark over labeler_quality.blocked_at.

Pure. The worker's quality job blocks labelers (gold accuracy, spec.labelers.blocked) and
stamps blocked_at; the operator posts one Event per block, reading only the blocks after
the last one it posted. The watermark lives in the operator's memory. After a restart it
starts from the campaign's status.lastProgressAt (the last time this operator wrote
progress) less RESTART_MARGIN, so no block is missed; blocks made in that last stretch
before the restart may be posted a second time (re-posting a few is the accepted cost of
keeping no extra state in the API server). A campaign that never had progress written
starts from the beginning: it has no blocks yet, or they were never posted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from labelops.store.summaries import BlockMark, BlockRow

# Covers clock skew between the operator and Postgres (blocked_at is the database's now()).
RESTART_MARGIN = dt.timedelta(seconds=60)
BLOCKED_REASON = "LabelerBlocked"


@dataclass
class BlockWatermark:
    mark: BlockMark | None = None
    started: bool = False

    def since(self, last_progress_at: dt.datetime | None) -> BlockMark | None:
        """Where the next read starts."""
        if not self.started:
            self.started = True
            if last_progress_at is not None:
                self.mark = (last_progress_at - RESTART_MARGIN, "")
        return self.mark

    def advance(self, blocks: Sequence[BlockRow]) -> None:
        if blocks:
            last = blocks[-1]
            self.mark = (last.blocked_at, last.labeler)


def block_message(block: BlockRow) -> str:
    reason = block.reason or "no reason recorded"
    return (
        f"labeler {block.labeler} blocked: {reason}; their labels on open items no longer "
        "count (spec.labelers.unblocked pardons)"
    )
