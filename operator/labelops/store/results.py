"""What the store hands back: plain frozen values, no database handles inside."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class LabelOrigin(StrEnum):
    """Who produced a label: counted as humanLabeled or machineLabeled in the status."""

    HUMAN = "human"
    MACHINE = "machine"


@dataclass(frozen=True)
class ClaimedTask:
    """A task leased to one labeler until lease_expires_at."""

    item_id: str  # the item's external id, as sent on the items topic
    payload: dict[str, Any]
    priority: int
    lease_expires_at: dt.datetime
    # The item message's "model" object ({"prediction": ..., "confidence": ...}), if any.
    model: dict[str, Any] | None = None


@dataclass(frozen=True)
class SubmitResult:
    label_id: str  # UUID, also the de-duplication key downstream of the labels topic
    item_id: str
    labeler: str
    created_at: dt.datetime
    replayed: bool  # true when this answers a retry with the same Idempotency-Key
    item_completed: bool  # the item holds labelsPerItem labels now


@dataclass(frozen=True)
class LabelerStats:
    labeler: str
    labels_today: int
    labels_total: int
    daily_quota: int
    daily_left: int
    active_leases: int
    max_leases: int
    quota_resets_at: dt.datetime  # next UTC midnight
