"""What an item message may hold, decided fast for the many good ones, explained for the bad.

Ingest must keep up with the database (tens of thousands of messages a second in one
process), so a message that is well formed costs one orjson parse, one compiled (Rust)
JSON Schema check of the whole message with the campaign's payload schema inside it, and
two substring scans of its raw bytes; its raw bytes are then sent to PostgreSQL as they
came, never serialised again. Any message the fast path does not accept goes through the
explaining path (`parse_item_message`, Python json and jsonschema, the same checks as
always), which names the field, the value and what is allowed, or accepts it after all:
the explaining path is the authority, the fast path only a shortcut to its "yes".

Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import orjson
from jsonschema import Draft202012Validator

from labelops.api.campaign import Task, TaskType
from labelops.api.tasktypes import (
    PAYLOAD_SCHEMAS,
    LabelValidator,
    Violation,
    label_schema,
    payload_violations,
)
from labelops.store.items import ItemRecord, RawItem, RawPrediction
from labelops.store.storable_json import MAX_DEPTH, storage_violations

MAX_ID_LENGTH = 512
MAX_VERSION_LENGTH = 200
UNADDRESSABLE_IDS = frozenset({".", ".."})
INT32 = 2**31
# Escaped NUL as JSON writes it; a raw NUL byte inside a string is not JSON at all.
_ESCAPED_NUL = b"\\u0000"
_RESPONSE_TYPES = (TaskType.PAIRWISE, TaskType.RANKING)


def model_schema(task: Task) -> dict[str, Any]:
    """A model's score of an item: which model, its answer (a label value of the task) and
    how sure it is. (NaN and infinities are not JSON: they never get this far.)"""
    return {
        "type": "object",
        "required": ["version", "prediction", "confidence"],
        "properties": {
            "version": {"type": "string", "minLength": 1, "maxLength": MAX_VERSION_LENGTH},
            "prediction": label_schema(task),
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
    }


def gold_schema(task: Task) -> dict[str, Any]:
    """A gold (honeypot) item's known answer: a label value of the task."""
    return {"type": "object", "required": ["value"], "properties": {"value": label_schema(task)}}


def item_message_schema(task: Task, *, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON Schema of an item message; with `payload`, the task's payload schema too."""
    return {
        "type": "object",
        "required": ["id", "payload"],
        "properties": {
            "id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
            "payload": payload or {"type": "object"},
            "priority": {"type": "integer", "minimum": -INT32, "maximum": INT32 - 1},
            "model": model_schema(task),
            "gold": gold_schema(task),
        },
    }


def parse_item_message(task: Task, key: bytes | None, value: bytes | None) -> ItemRecord:
    """The item a message carries; ValueError with the reason when it carries none."""
    return _Explainer.for_task(task).item(key, value)


class _Explainer:
    """The explaining path: Python json and jsonschema, every reason spelled out."""

    _cache: dict[str, _Explainer] = {}

    def __init__(self, task: Task) -> None:
        self.task = task
        self.message = Draft202012Validator(item_message_schema(task))
        self.labels = LabelValidator(task)

    @classmethod
    def for_task(cls, task: Task) -> _Explainer:
        key = task.model_dump_json()
        found = cls._cache.get(key)
        if found is None:
            found = cls._cache[key] = cls(task)
        return found

    def item(self, key: bytes | None, value: bytes | None) -> ItemRecord:
        document = _fitting_document(self.message, value, "items", "an item message")
        item_id = _storable_id(document, key, "item")
        payload = document["payload"]
        task_type = self.task.type
        unfit = payload_violations(task_type, payload)
        if unfit:
            raise ValueError(
                f"payload does not fit task type {task_type.value!r}: {_details(unfit)}"
            )
        model = document.get("model")
        gold = document.get("gold")
        for where, label in (
            ("/model/prediction", model and model["prediction"]),
            ("/gold/value", gold and gold["value"]),
        ):
            if label is None:
                continue
            wrong = self.labels.violations(payload, label)
            if wrong:
                raise ValueError(
                    f"{where[1:].replace('/', '.')} is not a label value of this"
                    f" {task_type.value} task: {_details(_moved(wrong, where))}"
                )
        return ItemRecord(
            id=item_id,
            payload=payload,
            priority=document.get("priority", 0),
            model_prediction=model["prediction"] if model else None,
            model_confidence=model["confidence"] if model else None,
            model_version=model["version"] if model else None,
            gold_value=gold["value"] if gold else None,
        )


def _moved(violations: list[Violation], where: str) -> list[Violation]:
    """LabelValidator's pointers (/value/...) moved to where the value is in the message."""
    return [Violation(v.pointer.replace("/value", where, 1), v.message) for v in violations]


class ItemMessages:
    """Decides item messages of one campaign: `accept` returns the item or raises
    ValueError with the reason."""

    def __init__(self, task: Task) -> None:
        self._task = task
        whole = item_message_schema(task, payload=PAYLOAD_SCHEMAS[task.type])
        self._valid = jsonschema_rs.Draft202012Validator(whole).is_valid
        self._unique_responses = task.type in _RESPONSE_TYPES
        # Label values whose validity depends on the item or on the campaign's own
        # labelSchema need LabelValidator; the others are fully checked by the schema.
        self._labels = (
            LabelValidator(task)
            if task.type in _RESPONSE_TYPES or task.label_schema is not None
            else None
        )

    def accept(self, key: bytes | None, value: bytes | None) -> RawItem:
        # The fast path, inline (it runs for every message): any doubt -> the explaining one.
        document = _plain_document(key, value)
        if document is not None and self._valid(document):
            item_id: str = document["id"]
            if (
                key == item_id.encode()
                and item_id not in UNADDRESSABLE_IDS
                and (not self._unique_responses or _unique_responses(document))
                and (self._labels is None or self._labels_fit(document))
            ):
                return RawItem(item_id, value)  # type: ignore[arg-type]  # not None here
        item = parse_item_message(self._task, key, value)
        assert value is not None  # parse_item_message refuses a message without one
        return RawItem(item.id, value)

    def _labels_fit(self, document: dict[str, Any]) -> bool:
        assert self._labels is not None
        payload = document["payload"]
        model, gold = document.get("model"), document.get("gold")
        return not (
            (model is not None and self._labels.violations(payload, model["prediction"]))
            or (gold is not None and self._labels.violations(payload, gold["value"]))
        )


def _plain_document(key: bytes | None, value: bytes | None) -> Any:
    """The parsed message when it has a key, a value, and certainly nothing the store
    refuses (no escaped NUL, too few brackets to nest too deeply); None when in doubt."""
    if key is None or value is None or _ESCAPED_NUL in value:
        return None
    if value.count(b"{") + value.count(b"[") > MAX_DEPTH:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def _unique_responses(document: dict[str, Any]) -> bool:
    ids = [r["id"] for r in document["payload"]["responses"]]
    return len(set(ids)) == len(ids)


def _check_id(item_id: str, key: bytes | None) -> None:
    if item_id in UNADDRESSABLE_IDS:
        raise ValueError(
            f"id {item_id!r} cannot be an item id: in a URL path (/v1/tasks/{item_id}/labels) "
            "browsers and proxies resolve it as a dot-segment, even percent-encoded, so the "
            "labeling page could never submit its label"
        )
    if key is None:
        raise ValueError(f"message has no key; the key must be the item id {item_id!r}")
    if key != item_id.encode("utf-8"):
        raise ValueError(
            f"message key {key.decode('utf-8', 'replace')!r} does not match id {item_id!r}"
        )


def _fitting_document(
    validator: Draft202012Validator, value: bytes | None, topic: str, what: str
) -> Any:
    """The message's JSON, which fits the validator's schema; ValueError naming every field
    that does not otherwise ("value is not <what>: ...")."""
    document = _load(value, topic)
    problems = [
        Violation(_pointer(e.absolute_path), e.message)
        for e in sorted(validator.iter_errors(document), key=lambda e: e.json_path)
    ]
    if problems:
        raise ValueError(f"value is not {what}: {_details(problems)}")
    return document


def _storable_id(document: dict[str, Any], key: bytes | None, what: str) -> str:
    """The message's id, once it is an item id, the message's key, and the store can keep
    the whole message; ValueError with the reason otherwise."""
    item_id: str = document["id"]
    _check_id(item_id, key)
    unstorable = storage_violations(document, "")
    if unstorable:
        raise ValueError(f"{what} cannot be stored: {_details(unstorable)}")
    return item_id


def _load(value: bytes | None, what: str) -> Any:
    if value is None:
        raise ValueError(f"message has no value (tombstones cannot delete {what})")
    try:
        return json.loads(value.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as err:
        raise ValueError(f"value is not UTF-8: {err}") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"value is not JSON: {err}") from err
    except RecursionError as err:
        raise ValueError("value is not usable JSON: it nests too deeply") from err


def _details(violations: list[Violation]) -> str:
    return "; ".join(f"{v.pointer}: {v.message}" for v in violations)


def _pointer(path: Any) -> str:
    return "".join(f"/{p}" for p in path) or "/"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"value is not JSON: {name} is not a JSON number")


# --- predictions ---------------------------------------------------------------------------


def prediction_message_schema(task: Task) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["id", "model"],
        "properties": {
            "id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
            "model": model_schema(task),
        },
    }


class PredictionMessages:
    """Decides prediction messages ({"id", "model": {"version", "prediction",
    "confidence"}}, key = item id) of one campaign: `accept` returns the prediction or
    raises ValueError with the reason. What depends on the item itself (a preferred
    response must be one of its responses) is checked where the item is: in the store."""

    def __init__(self, task: Task) -> None:
        schema = prediction_message_schema(task)
        self._valid = jsonschema_rs.Draft202012Validator(schema).is_valid
        self._explain = Draft202012Validator(schema)
        self._custom = (
            Draft202012Validator(task.label_schema) if task.label_schema is not None else None
        )

    def accept(self, key: bytes | None, value: bytes | None) -> RawPrediction:
        document = _plain_document(key, value)
        if (
            document is not None
            and self._valid(document)
            and key == document["id"].encode()
            and not self._custom_violations(document)
        ):
            return RawPrediction(document["id"], value)  # type: ignore[arg-type]
        return RawPrediction(self._explained(key, value), value or b"")

    def _custom_violations(self, document: dict[str, Any]) -> list[Violation]:
        if self._custom is None:
            return []
        return [
            Violation(
                _pointer(["model", "prediction", *e.absolute_path]), f"labelSchema: {e.message}"
            )
            for e in self._custom.iter_errors(document["model"]["prediction"])
        ]

    def _explained(self, key: bytes | None, value: bytes | None) -> str:
        """The item id of an acceptable message; ValueError with the reason otherwise."""
        document = _fitting_document(self._explain, value, "predictions", "a prediction message")
        problems = self._custom_violations(document)
        if problems:
            raise ValueError(f"prediction does not fit the label schema: {_details(problems)}")
        return _storable_id(document, key, "prediction")
