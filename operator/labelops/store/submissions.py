"""Submitting a label: validation here, the decision and the writes in the schema's
accept_label (migrations/0003_accept_label.sql), or accept_label_and_claim (0005), which
also leases the labeler's next task in the same transaction."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from labelops.api.tasktypes import LabelValidator, Violation
from labelops.api.worker_configmap import WorkerConfig
from labelops.store.claims import claim_params, claimed, seconds_until_utc_midnight
from labelops.store.errors import Blocked, Conflict, LeaseRequired, NotFound, QuotaExceeded
from labelops.store.progress import PROGRESS_SHARDS, CounterDelta, bump_params
from labelops.store.queries import Queries
from labelops.store.results import ClaimedTask, LabelOrigin, SubmitResult
from labelops.store.storable_json import storage_violations

# What leasing the next task gave: the task with its payload's size, nothing to lease, or
# a quota that refused it.
NextLease = tuple[ClaimedTask, int] | QuotaExceeded | None


@dataclass(frozen=True)
class Submission:
    labeler: str
    item_id: str
    value: Any
    idempotency_key: str | None
    origin: LabelOrigin
    lease_next: bool = False  # also lease the labeler's next task, in the same transaction


@dataclass(frozen=True)
class Submitted:
    result: SubmitResult
    # With lease_next: whether the database leased (or tried to lease) the next task with
    # the label; not when the submission was answered as a replay before reaching it.
    claimed: bool = False
    next_lease: NextLease = None


def submit_label(
    conn: psycopg.Connection[Any],
    q: Queries,
    config: WorkerConfig,
    validator: LabelValidator,
    sub: Submission,
) -> Submitted | list[Violation]:
    """The slow path of a submission: accept the label, or raise why not; an invalid value
    is counted as `rejected` and returned as its violations (the caller raises
    InvalidLabel).

    The fast path, a value valid against the payload its labeler leased (see
    labelops.store.leased_payloads), is LabelStore's: it goes straight to accept_one (or a batch),
    which checks the Idempotency-Key, the lease and the rest under the item's lock.

    Here, with no payload at hand or a value that is invalid against it, the checks run in
    the documented order: the item's payload and an earlier label under the
    Idempotency-Key are read first, without locks (one pipelined round trip); a replay or
    a reused key is answered before the value is validated; then accept_label."""
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
        raise _not_found(sub)
    previous = earlier.fetchone() if earlier is not None else None
    if previous is not None:
        return Submitted(_replay(config, sub, previous))

    violations = label_violations(validator, item[0], sub.value)
    if violations:
        conn.execute(q.bump_progress, bump_params(CounterDelta(rejected=1)))
        return violations
    return accept_one(conn, q, config, sub)


def label_violations(
    validator: LabelValidator, payload: dict[str, Any], value: Any
) -> list[Violation]:
    return storage_violations(value, "/value") or validator.violations(payload, value)


def accept_one(
    conn: psycopg.Connection[Any], q: Queries, config: WorkerConfig, sub: Submission
) -> Submitted:
    shard = random.randrange(PROGRESS_SHARDS)
    params = accept_params(config, sub, shard)
    if sub.lease_next:
        lease_seconds, _, max_leases, reap_limit = claim_params(config, sub.labeler)[2:]
        params += (lease_seconds, max_leases, reap_limit)
    row = conn.execute(q.accept_label_and_claim if sub.lease_next else q.accept_label, params)
    found = row.fetchone()
    assert found is not None  # both functions always return one row
    return accepted(found, config, sub)


def accept_params(config: WorkerConfig, sub: Submission, shard: int) -> tuple[Any, ...]:
    """accept_label's arguments, in its order."""
    return (
        sub.item_id,
        sub.labeler,
        config.target.labels_per_item,
        config.quotas.per_labeler_daily,
        Jsonb(sub.value),
        sub.origin.value,
        sub.idempotency_key,
        config.namespace,
        config.name,
        shard,
    )


def accepted(found: Sequence[Any], config: WorkerConfig, sub: Submission) -> Submitted:
    """What accept_label (or accept_label_and_claim, accept_labels without their first
    column) answered: the result, or the refusal raised."""
    verdict, label_id, created_at = found[:3]
    if verdict == "accepted":
        result = SubmitResult(
            label_id=label_id,
            item_id=sub.item_id,
            labeler=sub.labeler,
            created_at=created_at,
            replayed=False,
            item_completed=bool(found[-1]),
        )
    elif verdict == "replay":  # this key was used before, perhaps by a concurrent first try
        result = _replay(config, sub, tuple(found[4:9]))
    elif verdict == "not_found":
        raise _not_found(sub)
    elif verdict == "blocked":
        raise Blocked(found[-2])
    else:
        raise refusal(verdict, config, sub, created_at)
    if not sub.lease_next:
        return Submitted(result)
    try:
        next_lease: NextLease = claimed(found[9:], config, sub.labeler)
    except QuotaExceeded as refused:
        next_lease = refused
    return Submitted(result, claimed=True, next_lease=next_lease)


def _not_found(sub: Submission) -> NotFound:
    return NotFound(f"no item with id {sub.item_id!r} in this campaign")


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
    """The error for accept_label's verdict, in words the labeler can act on."""
    per_item = config.target.labels_per_item
    if verdict == "already_labeled":
        return Conflict(
            "already_labeled",
            f"labeler {sub.labeler!r} already labeled item {sub.item_id!r}; each labeler "
            "labels an item at most once",
        )
    if verdict == "item_full":
        overlap = config.quality.overlap if config.quality else None
        rule = (
            f"is complete, or holds the labels quality.overlap (min {overlap.min}, max "
            f"{overlap.max}, agreement {overlap.agreement:g}) still needs"
            if overlap
            else f"already has its {per_item} labels (target.labelsPerItem)"
        )
        return Conflict("item_full", f"item {sub.item_id!r} {rule}; claim another task")
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
    raise AssertionError(f"accept_label returned an unknown verdict {verdict!r}")
