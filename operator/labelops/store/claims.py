"""Claiming and releasing tasks: calls of the schema's claim_task and release_task."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from typing import Any

import psycopg

from labelops.api.worker_configmap import WorkerConfig
from labelops.store.errors import Blocked, NotFound, QuotaExceeded
from labelops.store.queries import Queries
from labelops.store.results import ClaimedTask

# Expired leases returned to the pool per claim: bounds the claim's cost after an outage
# in which many leases lapsed at once; the next claims reap the rest.
REAP_BATCH = 100


def claim_next(
    conn: psycopg.Connection[Any], q: Queries, config: WorkerConfig, labeler: str
) -> tuple[ClaimedTask, int] | None:
    """The task leased, with the size of its payload's JSON text (characters), or None."""
    row = conn.execute(q.claim_task, claim_params(config, labeler)).fetchone()
    assert row is not None  # claim_task always returns one row
    return claimed(row, config, labeler)


def claim_params(config: WorkerConfig, labeler: str) -> tuple[Any, ...]:
    """claim_task's arguments, in its order."""
    quotas = config.quotas
    return (
        labeler,
        config.target.labels_per_item,
        quotas.lease_seconds,
        quotas.per_labeler_daily,
        quotas.max_leases_per_labeler,
        REAP_BATCH,
    )


def claimed(
    row: Sequence[Any], config: WorkerConfig, labeler: str
) -> tuple[ClaimedTask, int] | None:
    """claim_task's result columns (payload as text), as claim_next returns them; raises
    QuotaExceeded for a refusal."""
    quotas = config.quotas
    verdict, labels_today, held, earliest_expiry, now = row[:5]
    if verdict == "claimed":
        item_id, payload_text, priority, prediction, confidence, expires_at = row[5:11]
        task = ClaimedTask(
            item_id=item_id,
            payload=json.loads(payload_text),
            priority=priority,
            lease_expires_at=expires_at,
            # model.showPrediction: off by default, so labelers are not anchored.
            model=model_hint(prediction, confidence) if shows_prediction(config) else None,
        )
        return task, len(payload_text)
    if verdict == "none":
        return None
    if verdict == "blocked":
        raise Blocked(row[11])
    if verdict == "per_labeler_daily":
        raise QuotaExceeded(
            "per_labeler_daily",
            seconds_until_utc_midnight(now),
            f"labeler {labeler!r} submitted {labels_today} labels today, the daily quota "
            f"(quotas.perLabelerDaily) is {quotas.per_labeler_daily}; it resets at 00:00 UTC",
        )
    if verdict == "max_leases_per_labeler":
        raise QuotaExceeded(
            "max_leases_per_labeler",
            seconds_between(now, earliest_expiry),
            f"labeler {labeler!r} holds {held} tasks, the most allowed at once "
            f"(quotas.maxLeasesPerLabeler) is {quotas.max_leases_per_labeler}; "
            "submit or release one first",
        )
    if verdict == "daily_room":
        raise QuotaExceeded(
            "per_labeler_daily",
            seconds_between(now, earliest_expiry),
            f"labeler {labeler!r} submitted {labels_today} labels today and holds {held} "
            f"tasks, which is all the daily quota (quotas.perLabelerDaily = "
            f"{quotas.per_labeler_daily}) leaves room for; submit or release them",
        )
    raise AssertionError(f"claim_task returned an unknown verdict {verdict!r}")


def release_item(conn: psycopg.Connection[Any], q: Queries, labeler: str, item_id: str) -> bool:
    """Give the labeler's lease on item_id back to the pool and remember the skip, so the
    labeler is not offered the item again. False when the labeler held no lease on it."""
    row = conn.execute(q.release_task, {"item_id": item_id, "labeler": labeler}).fetchone()
    assert row is not None  # release_task always returns one row
    item_found, had_lease = row
    if not item_found:
        raise NotFound(f"no item with id {item_id!r} in this campaign")
    return bool(had_lease)


def shows_prediction(config: WorkerConfig) -> bool:
    return config.model is not None and config.model.show_prediction


def model_hint(prediction: Any, confidence: float | None) -> dict[str, Any] | None:
    hint: dict[str, Any] = {}
    if prediction is not None:
        hint["prediction"] = prediction
    if confidence is not None:
        hint["confidence"] = confidence
    return hint or None


def next_utc_midnight(now: dt.datetime) -> dt.datetime:
    """When perLabelerDaily resets."""
    today = now.astimezone(dt.UTC).date()
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def seconds_until_utc_midnight(now: dt.datetime) -> int:
    return seconds_between(now, next_utc_midnight(now))


def seconds_between(now: dt.datetime, later: dt.datetime | None) -> int:
    if later is None:
        return 1
    return max(1, math.ceil((later - now).total_seconds()))
