"""Payloads of the tasks this process leased, so that a submission can be validated without
reading its item first (one round trip per label instead of two).

Entries are keyed by (labeler, item id), and that is what makes a remembered payload the
item's current one whenever it matters. The claim that remembered it created the labeler's
lease row on the item, and ingest never changes an item that has any lease row
(update_untouched_items). That row goes away only when the labeler's label is accepted or
the task released; after either, the labeler can never hold the item again (already
labeled; skipped), and the database answers their submission with 409 whatever its value.
So while a submission can still be accepted, the item's payload is the remembered one, and
accept_label re-checks the lease under the item's lock.

A miss (claimed through another replica or process, evicted, or too large to keep) falls
back to reading the item. The cache is bounded in entries and keeps only small payloads, so
abandoned leases cannot grow it without limit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

MAX_ENTRIES = 1024
# Larger payloads are read again at submission: keeping them could cost MAX_ENTRIES times
# their size in memory.
MAX_PAYLOAD_CHARS = 64 * 1024


class LeasedPayloads:
    def __init__(
        self, max_entries: int = MAX_ENTRIES, max_payload_chars: int = MAX_PAYLOAD_CHARS
    ) -> None:
        self._max_entries = max_entries
        self._max_payload_chars = max_payload_chars
        self._entries: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, labeler: str, item_id: str, payload: dict[str, Any], chars: int) -> None:
        if chars > self._max_payload_chars:
            return
        with self._lock:
            self._entries[(labeler, item_id)] = payload
            if len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)  # the oldest: most likely abandoned

    def get(self, labeler: str, item_id: str) -> dict[str, Any] | None:
        return self._entries.get((labeler, item_id))

    def forget(self, labeler: str, item_id: str) -> None:
        with self._lock:
            self._entries.pop((labeler, item_id), None)

    def __len__(self) -> int:
        return len(self._entries)
