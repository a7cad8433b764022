"""The contract between items, labelers and labels, per task type.

Pure functions: the JSON Schema an item payload must satisfy, the JSON Schema a label value
must satisfy (derived from the task, plus the campaign's own `labelSchema`), and the checks
that depend on the item itself (a preferred response must be one of the item's responses;
a ranking must be a permutation of them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from labelops.api.campaign import Task, TaskType

_RESPONSE = {
    "type": "object",
    "required": ["id", "text"],
    "properties": {"id": {"type": "string", "minLength": 1}, "text": {"type": "string"}},
}

PAYLOAD_SCHEMAS: dict[TaskType, dict[str, Any]] = {
    TaskType.PAIRWISE: {
        "type": "object",
        "required": ["prompt", "responses"],
        "properties": {
            "prompt": {"type": "string"},
            "responses": {"type": "array", "items": _RESPONSE, "minItems": 2, "maxItems": 2},
        },
    },
    TaskType.RANKING: {
        "type": "object",
        "required": ["prompt", "responses"],
        "properties": {
            "prompt": {"type": "string"},
            "responses": {"type": "array", "items": _RESPONSE, "minItems": 2},
        },
    },
    TaskType.RATING: {
        "type": "object",
        "required": ["text"],
        "properties": {"prompt": {"type": "string"}, "text": {"type": "string"}},
    },
    TaskType.CLASSIFICATION: {
        "type": "object",
        "required": ["text"],
        "properties": {"text": {"type": "string"}},
    },
    TaskType.FREE_TEXT: {
        "type": "object",
        "required": ["prompt"],
        "properties": {"prompt": {"type": "string"}},
    },
}


# A reason quotes the refused value (jsonschema's messages do): a 1 MiB string must not come
# back as a 1 MiB problem detail, log line or dead letter.
MAX_MESSAGE_CHARS = 500


def bounded(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """text cut to about `limit` characters (saying how much was cut), NUL spelled out so
    the text can be stored (PostgreSQL text refuses it) and logged."""
    text = text.replace("\x00", "\\u0000")
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}... ({len(text) - limit + 40} more characters)"


@dataclass(frozen=True)
class Violation:
    """One reason a payload or label was refused: a JSON pointer and what is allowed."""

    pointer: str
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "pointer", bounded(self.pointer))
        object.__setattr__(self, "message", bounded(self.message))

    def as_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "message": self.message}


def label_schema(task: Task) -> dict[str, Any]:
    """The JSON Schema of a label value for this task, before item-specific checks."""
    match task.type:
        case TaskType.PAIRWISE:
            return {
                "type": "object",
                "required": ["preferred"],
                "additionalProperties": False,
                "properties": {
                    "preferred": {"type": "string", "minLength": 1},
                    "rationale": {"type": "string", "maxLength": 10000},
                },
            }
        case TaskType.RANKING:
            return {
                "type": "object",
                "required": ["order"],
                "additionalProperties": False,
                "properties": {
                    "order": {
                        "type": "array",
                        "items": {"type": "string"},
                        "minItems": 2,
                        "uniqueItems": True,
                    }
                },
            }
        case TaskType.RATING:
            assert task.scale is not None  # the CRD requires scale for rating
            return {
                "type": "object",
                "required": ["score"],
                "additionalProperties": False,
                "properties": {
                    "score": {
                        "type": "integer",
                        "minimum": task.scale.min,
                        "maximum": task.scale.max,
                    }
                },
            }
        case TaskType.CLASSIFICATION:
            choice = {"enum": list(task.choices or [])}
            if task.multiple:
                return {
                    "type": "object",
                    "required": ["choices"],
                    "additionalProperties": False,
                    "properties": {
                        "choices": {
                            "type": "array",
                            "items": choice,
                            "minItems": 1,
                            "uniqueItems": True,
                        }
                    },
                }
            return {
                "type": "object",
                "required": ["choice"],
                "additionalProperties": False,
                "properties": {"choice": choice},
            }
        case TaskType.FREE_TEXT:
            text: dict[str, Any] = {"type": "string"}
            if task.min_length is not None:
                text["minLength"] = task.min_length
            if task.max_length is not None:
                text["maxLength"] = task.max_length
            return {
                "type": "object",
                "required": ["text"],
                "additionalProperties": False,
                "properties": {"text": text},
            }
    raise ValueError(f"unknown task type {task.type!r}")


def check_label_schema(task: Task) -> Violation | None:
    """Whether the campaign's own labelSchema is itself a valid JSON Schema."""
    if task.label_schema is None:
        return None
    try:
        Draft202012Validator.check_schema(task.label_schema)
    except SchemaError as err:
        where = "/".join(str(p) for p in err.path)
        return Violation(f"/spec/task/labelSchema/{where}".rstrip("/"), err.message)
    return None


def _pointer(path: Any) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/value" + "".join(f"/{p}" for p in parts)


def _schema_violations(schema: dict[str, Any], instance: Any) -> list[Violation]:
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [Violation(_pointer(e.absolute_path), e.message) for e in errors]


class LabelValidator:
    """Validates label values for one task; schemas are compiled once."""

    def __init__(self, task: Task) -> None:
        self.task = task
        builtin = label_schema(task)
        self._builtin = Draft202012Validator(builtin)
        # The built-in schemas use only keywords both libraries implement alike (type, enum,
        # lengths, bounds, uniqueItems); the Rust one answers "valid?" for every label at a
        # fraction of the cost, and only an invalid value is explained by the Python one.
        # The campaign's own labelSchema is always checked by the Python validator.
        self._builtin_valid = jsonschema_rs.Draft202012Validator(builtin).is_valid
        self._custom = (
            Draft202012Validator(task.label_schema) if task.label_schema is not None else None
        )

    def violations(self, payload: dict[str, Any], value: Any) -> list[Violation]:
        found = (
            []
            if self._builtin_valid(value)
            else [
                Violation(_pointer(e.absolute_path), e.message)
                for e in self._builtin.iter_errors(value)
            ]
        )
        if not found:
            found = self._item_violations(payload, value)
        if self._custom is not None:
            found += [
                Violation(_pointer(e.absolute_path), f"labelSchema: {e.message}")
                for e in self._custom.iter_errors(value)
            ]
        return found

    def _item_violations(self, payload: dict[str, Any], value: dict[str, Any]) -> list[Violation]:
        ids = [r["id"] for r in payload.get("responses", [])]
        if self.task.type is TaskType.PAIRWISE and value["preferred"] not in [*ids, "tie"]:
            allowed = ", ".join(repr(i) for i in [*ids, "tie"])
            return [
                Violation("/value/preferred", f"{value['preferred']!r} is not one of {allowed}")
            ]
        if self.task.type is TaskType.RANKING and sorted(value["order"]) != sorted(ids):
            return [
                Violation(
                    "/value/order",
                    f"must be a permutation of all response ids {ids}, got {value['order']}",
                )
            ]
        return []


def payload_violations(task_type: TaskType, payload: Any) -> list[Violation]:
    """Why an item payload does not fit its campaign's task type (empty when it fits)."""
    found = _schema_violations(PAYLOAD_SCHEMAS[task_type], payload)
    if not found and task_type in (TaskType.PAIRWISE, TaskType.RANKING):
        ids = [r["id"] for r in payload["responses"]]
        if len(set(ids)) != len(ids):
            found.append(Violation("/payload/responses", f"response ids must be unique: {ids}"))
    return [Violation(v.pointer.replace("/value", "/payload", 1), v.message) for v in found]
