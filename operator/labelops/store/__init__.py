"""A campaign's Postgres schema: migrations, label queries, progress counters.

The semantics every caller relies on are documented in labelops.store.labelstore.
"""

from labelops.store.labelstore import LabelStore
from labelops.store.migrations import migrate
from labelops.store.progress import ProgressCounts, read_progress
from labelops.store.results import ClaimedTask, LabelerStats, LabelOrigin, SubmitResult

__all__ = [
    "ClaimedTask",
    "LabelOrigin",
    "LabelStore",
    "LabelerStats",
    "ProgressCounts",
    "SubmitResult",
    "migrate",
    "read_progress",
]
