"""Why the store refused a request, in words a labeler can act on.

The HTTP layer maps them: NotFound -> 404, Conflict (and its LeaseRequired) -> 409,
InvalidLabel -> 422, Blocked -> 403, QuotaExceeded -> 429 with Retry-After. Every error carries a
machine-readable `reason` and a human `message`.
"""

from __future__ import annotations

from labelops.api.tasktypes import Violation


class StoreError(Exception):
    """Base of every refusal; `str(err)` is the human message."""

    reason: str = "store_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(StoreError):
    reason = "not_found"


class Conflict(StoreError):
    """The request contradicts the current state (item full, already labeled, ...).

    reason is one of: "item_full", "already_labeled", "lease_expired", "lease_required",
    "idempotency_key_reused".
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class LeaseRequired(Conflict):
    """The labeler never claimed (or released) the item they are labeling."""

    def __init__(self, message: str) -> None:
        super().__init__("lease_required", message)


class Blocked(StoreError):
    """The labeler may not label in this campaign (spec.labelers.blocked, or the gold rule);
    the message names the rule and the figures."""

    reason = "labeler_blocked"


class QuotaExceeded(StoreError):
    """A per-labeler quota is used up; retry_after says when it frees up (seconds, >= 1).

    reason is one of: "per_labeler_daily", "max_leases_per_labeler".
    """

    def __init__(self, reason: str, retry_after: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = max(1, retry_after)


class InvalidLabel(StoreError):
    """The label value does not fit the task; each violation names its JSON pointer."""

    reason = "invalid_label"

    def __init__(self, violations: list[Violation]) -> None:
        details = "; ".join(f"{v.pointer}: {v.message}" for v in violations)
        super().__init__(f"the label does not fit the task: {details}")
        self.violations = violations
