"""Submitting a label: validation here, the decision and the writes in the schema's
submit_label (migrations/0002_claim_and_submit.sql)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from labelops.api.tasktypes import LabelValidator, Violation
from labelops.api.workerconfig import WorkerConfig
from labelops.store.claims import seconds_until_utc_midnight
from labelops.store.errors import Conflict, LeaseRequired, NotFound, QuotaExceeded
from labelops.store.jsoncheck import storage_violations
from labelops.store.progress import PROGRESS_SHARDS, CounterDelta, bump_params
from labelops.store.queries import Queries
from labelops.store.results import LabelOrigin, SubmitResult


@dataclass(frozen=True)
class Submission:
    labeler: str
    item_id: str
    value: Any
    idempotency_key: str | None
    origin: LabelOrigin


def submit_label(
    conn: psycopg.Connection[Any],
    q: Queries,
    config: WorkerConfig,
    validator: LabelValidator,
    sub: Submission,
) -> SubmitResult | list[Violation]:
    """Accept the label, or raise why not; an invalid value is counted as `rejected` and
    returned as its violations (the caller raises InvalidLabel).

    Two round trips on an autocommit connection: the item's payload (validated here) and
    an earlier label under the Idempotency-Key, read without locks; then the schema's
    submit_label, which decides and writes under the item's lock in one statement."""
    with conn.pipeline():
        found = conn.execute(q.item_to_label, {"item_id": sub.item_id})
        earlier = (
            conn.execute(
                q.label_by_idempotency_key, {"labeler": sub.labeler, "key": sub.idempotency_key}
            )
            if sub.idempotency_key is not None
            else None
        )
    item = found.fetchone()
    if item is None:
        raise NotFound(f"no item with id {sub.item_id!r} in this campaign")
    item_pk, payload, now = item
    previous = earlier.fetchone() if earlier is not None else None
    if previous is not None:
        return _replay(config, sub, previous)

    violations = storage_violations(sub.value, "/value") or validator.violations(payload, sub.value)
    if violations:
        conn.execute(q.bump_progress, bump_params(CounterDelta(rejected=1)))
        return violations

    label_id = uuid.uuid4()
    row = conn.execute(
        q.submit_label,
        {
            "item": item_pk,
            "labeler": sub.labeler,
            "labels_per_item": config.target.labels_per_item,
            "daily_quota": config.quotas.per_labeler_daily,
            "label_id": label_id,
            "value": Jsonb(sub.value),
            "origin": sub.origin.value,
            "idempotency_key": sub.idempotency_key,
            "created_at": now,
            "message": Jsonb(label_message(config, sub, str(label_id), now)),
            "shard": random.randrange(PROGRESS_SHARDS),
        },
    ).fetchone()
    assert row is not None  # submit_label always returns one row
    verdict, ordinal = row[:2]
    if verdict == "accepted":
        return SubmitResult(
            label_id=str(label_id),
            item_id=sub.item_id,
            labeler=sub.labeler,
            created_at=now,
            replayed=False,
            item_completed=ordinal >= config.target.labels_per_item,
        )
    if verdict == "replay":  # a concurrent first try with this key got there first
        return _replay(config, sub, tuple(row[2:]))
    raise refusal(verdict, config, sub, now)


def _replay(config: WorkerConfig, sub: Submission, previous: tuple[Any, ...]) -> SubmitResult:
    label_id, item_id, value, created_at, ordinal = previous
    if item_id != sub.item_id or value != sub.value:
        raise Conflict(
            "idempotency_key_reused",
            f"Idempotency-Key {sub.idempotency_key!r} was already used by labeler "
            f"{sub.labeler!r} for a different submission (item {item_id!r}); use a new key "
            "for a new label",
        )
    return SubmitResult(
        label_id=label_id,
        item_id=item_id,
        labeler=sub.labeler,
        created_at=created_at,
        replayed=True,
        item_completed=ordinal >= config.target.labels_per_item,
    )


def refusal(
    verdict: str, config: WorkerConfig, sub: Submission, now: dt.datetime
) -> Conflict | QuotaExceeded:
    """The error for submit_label's verdict, in words the labeler can act on."""
    per_item = config.target.labels_per_item
    if verdict == "already_labeled":
        return Conflict(
            "already_labeled",
            f"labeler {sub.labeler!r} already labeled item {sub.item_id!r}; each labeler "
            "labels an item at most once",
        )
    if verdict == "item_full":
        return Conflict(
            "item_full",
            f"item {sub.item_id!r} already has its {per_item} labels "
            "(target.labelsPerItem); claim another task",
        )
    if verdict == "lease_required":
        return LeaseRequired(
            f"labeler {sub.labeler!r} holds no lease on item {sub.item_id!r} (never claimed, "
            "or released); claim a task before labeling it"
        )
    if verdict == "lease_expired":
        return Conflict(
            "lease_expired",
            f"the lease of labeler {sub.labeler!r} on item {sub.item_id!r} expired "
            f"(quotas.leaseSeconds = {config.quotas.lease_seconds}) and the item's "
            "remaining slots are held by other labelers; claim another task",
        )
    if verdict == "per_labeler_daily":
        return QuotaExceeded(
            "per_labeler_daily",
            seconds_until_utc_midnight(now),
            f"labeler {sub.labeler!r} reached the daily quota (quotas.perLabelerDaily) of "
            f"{config.quotas.per_labeler_daily} labels; it resets at 00:00 UTC",
        )
    raise AssertionError(f"submit_label returned an unknown verdict {verdict!r}")


def label_message(
    config: WorkerConfig, sub: Submission, label_id: str, created_at: dt.datetime
) -> dict[str, Any]:
    """The value published on the labels topic (key: the item id), without "ordinal",
    which the database adds when it assigns it. labelId identifies the label: consumers
    de-duplicate redeliveries by it. ordinal == labelsPerItem marks the label that
    completed the item."""
    return {
        "labelId": label_id,
        "campaign": {"namespace": config.namespace, "name": config.name},
        "itemId": sub.item_id,
        "labeler": sub.labeler,
        "origin": sub.origin.value,
        "value": sub.value,
        "labelsPerItem": config.target.labels_per_item,
        "createdAt": created_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
    }
