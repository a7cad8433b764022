"""The JSON the API sends: store results turned into the camelCase shapes of openapi_document.py."""

from __future__ import annotations

import datetime as dt
from dataclasses import fields
from typing import Any

from pydantic.alias_generators import to_camel

from labelops.api.worker_configmap import WorkerConfig
from labelops.store.progress import ProgressCounts
from labelops.store.results import ClaimedTask, LabelerStats, SubmitResult


def timestamp(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with a Z, the form JavaScript's Date and every JSON client parse."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def task(claimed: ClaimedTask) -> dict[str, Any]:
    return {
        "id": claimed.item_id,
        "payload": claimed.payload,
        "priority": claimed.priority,
        "leaseExpiresAt": timestamp(claimed.lease_expires_at),
    }


def camel_case_fields(record: SubmitResult | LabelerStats) -> dict[str, Any]:
    """A store result's fields under their camelCase names, times as timestamp() writes them."""
    body: dict[str, Any] = {}
    for field in fields(record):
        value = getattr(record, field.name)
        body[to_camel(field.name)] = timestamp(value) if isinstance(value, dt.datetime) else value
    return body


def receipt(result: SubmitResult) -> dict[str, Any]:
    return camel_case_fields(result)


def me(stats: LabelerStats) -> dict[str, Any]:
    return camel_case_fields(stats)


def progress(counts: ProgressCounts, config: WorkerConfig) -> dict[str, Any]:
    labels_target = config.target.items * config.target.labels_per_item
    # The same figure the operator writes to status.progress.percent.
    percent = min(100.0, round(100.0 * counts.labels / labels_target, 1))
    return {
        "itemsTotal": counts.items_total,
        "itemsCompleted": counts.items_completed,
        "itemsTarget": config.target.items,
        "labels": counts.labels,
        "labelsTarget": labels_target,
        "percent": percent,
        "humanLabeled": counts.human_labeled,
        "machineLabeled": counts.machine_labeled,
        "rejected": counts.rejected,
        "deadLettered": counts.dead_lettered,
    }


def campaign(config: WorkerConfig) -> dict[str, Any]:
    """What the labeling page needs to render the task: type, instructions, choices, limits."""
    task_fields = config.task.model_dump(
        mode="json",
        by_alias=True,
        exclude_none=True,
        include={
            "type",
            "instructions",
            "choices",
            "multiple",
            "scale",
            "min_length",
            "max_length",
        },
    )
    return {
        "namespace": config.namespace,
        "name": config.name,
        "task": task_fields,
        "target": {"items": config.target.items, "labelsPerItem": config.target.labels_per_item},
        "quotas": {
            "perLabelerDaily": config.quotas.per_labeler_daily,
            "maxLeasesPerLabeler": config.quotas.max_leases_per_labeler,
            "leaseSeconds": config.quotas.lease_seconds,
        },
        "paused": config.paused,
    }
