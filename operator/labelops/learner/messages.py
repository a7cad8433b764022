"""The learner's side of the three topics' message formats, pure.

In:  items  (worker/ingest.py): key = item id, value {"id", "payload", ...}; a later message
            of an id replaces its payload.
     labels (worker/outbox.py): value {"labelId", "itemId", "origin", "value", ...}; only
            origin "human" teaches the model (machine labels are the model's own answers).
Out: predictions: key = item id, value {"id", "model": {"version", "prediction", "confidence"}}.
A message the learner cannot use is skipped with the reason (the worker dead-letters bad
items; the learner only reads).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from labelops.api.campaign import TaskType
from labelops.api.tasktypes import payload_violations

HUMAN = "human"


class Unusable(ValueError):
    """A message the learner skips; the message says why."""


@dataclass(frozen=True)
class ItemMessage:
    item_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class HumanLabel:
    label_id: str
    item_id: str
    value: Any


def _document(value: bytes | None) -> Any:
    if value is None:
        raise Unusable("message has no value")
    try:
        return json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise Unusable(f"value is not JSON: {err}") from None


def parse_item(task_type: TaskType, value: bytes | None) -> ItemMessage:
    document = _document(value)
    if not isinstance(document, dict):
        raise Unusable("value is not a JSON object")
    item_id, payload = document.get("id"), document.get("payload")
    if not isinstance(item_id, str) or not item_id:
        raise Unusable(f"id={item_id!r}: must be a non-empty string")
    violations = payload_violations(task_type, payload)
    if violations:
        details = "; ".join(f"{v.pointer}: {v.message}" for v in violations)
        raise Unusable(f"item {item_id!r}: payload does not fit {task_type.value!r}: {details}")
    assert isinstance(payload, dict)
    return ItemMessage(item_id, payload)


def parse_label(value: bytes | None) -> HumanLabel | None:
    """The human label a message carries; None for a machine label."""
    document = _document(value)
    if not isinstance(document, dict):
        raise Unusable("value is not a JSON object")
    origin = document.get("origin")
    if origin != HUMAN:
        if isinstance(origin, str):
            return None
        raise Unusable(f"origin={origin!r}: must be a string ('human' or 'machine')")
    label_id, item_id = document.get("labelId"), document.get("itemId")
    if not isinstance(label_id, str) or not label_id:
        raise Unusable(f"labelId={label_id!r}: must be a non-empty string")
    if not isinstance(item_id, str) or not item_id:
        raise Unusable(f"itemId={item_id!r}: must be a non-empty string")
    if "value" not in document:
        raise Unusable(f"label {label_id}: no value")
    return HumanLabel(label_id, item_id, document["value"])


def prediction_message(
    item_id: str, version: str, prediction: dict[str, Any], confidence: float
) -> tuple[bytes, bytes]:
    """(key, value) of a predictions-topic message."""
    if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        raise ValueError(f"confidence={confidence!r}: must be a number in [0, 1]")
    document = {
        "id": item_id,
        "model": {"version": version, "prediction": prediction, "confidence": confidence},
    }
    return item_id.encode("utf-8"), json.dumps(document, separators=(",", ":")).encode("utf-8")
