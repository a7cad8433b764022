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

from labelops.api.campaign import TaskType
from labelops.api.tasktypes import PAYLOAD_SCHEMAS, Violation, payload_violations
from labelops.store.items import ItemRecord, RawItem
from labelops.store.jsoncheck import MAX_DEPTH, storage_violations

MAX_ID_LENGTH = 512
UNADDRESSABLE_IDS = frozenset({".", ".."})
INT32 = 2**31

ITEM_MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "payload"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
        "payload": {"type": "object"},
        "priority": {"type": "integer", "minimum": -INT32, "maximum": INT32 - 1},
        "model": {
            "type": "object",
            "properties": {"confidence": {"type": "number"}},
        },
    },
}
_MESSAGE_VALIDATOR = Draft202012Validator(ITEM_MESSAGE_SCHEMA)
# Escaped NUL as JSON writes it; a raw NUL byte inside a string is not JSON at all.
_ESCAPED_NUL = b"\\u0000"
_RESPONSE_TYPES = (TaskType.PAIRWISE, TaskType.RANKING)


def parse_item_message(task_type: TaskType, key: bytes | None, value: bytes | None) -> ItemRecord:
    """The item a message carries; ValueError with the reason when it carries none."""
    document = _load(value, "items")
    problems = [
        Violation(_pointer(e.absolute_path), e.message)
        for e in sorted(_MESSAGE_VALIDATOR.iter_errors(document), key=lambda e: e.json_path)
    ]
    if problems:
        raise ValueError(f"value is not an item message: {_details(problems)}")
    item_id: str = document["id"]
    _check_id(item_id, key)
    unstorable = storage_violations(document, "")
    if unstorable:
        raise ValueError(f"item cannot be stored: {_details(unstorable)}")
    payload = document["payload"]
    unfit = payload_violations(task_type, payload)
    if unfit:
        raise ValueError(f"payload does not fit task type {task_type.value!r}: {_details(unfit)}")
    model = document.get("model", {})
    return ItemRecord(
        id=item_id,
        payload=payload,
        priority=document.get("priority", 0),
        model_prediction=model.get("prediction"),
        model_confidence=model.get("confidence"),
    )


class ItemMessages:
    """Decides item messages of one campaign: `accept` returns the item or raises
    ValueError with the reason."""

    def __init__(self, task_type: TaskType) -> None:
        self._task_type = task_type
        whole = {
            **ITEM_MESSAGE_SCHEMA,
            "properties": {
                **ITEM_MESSAGE_SCHEMA["properties"],
                "payload": PAYLOAD_SCHEMAS[task_type],
            },
        }
        self._valid = jsonschema_rs.Draft202012Validator(whole).is_valid
        self._unique_responses = task_type in _RESPONSE_TYPES

    def accept(self, key: bytes | None, value: bytes | None) -> RawItem:
        # The fast path, inline (it runs for every message): any doubt -> the explaining one.
        document = _plain_document(key, value)
        if document is not None and self._valid(document):
            item_id: str = document["id"]
            if (
                key == item_id.encode()
                and item_id not in UNADDRESSABLE_IDS
                and (not self._unique_responses or _unique_responses(document))
            ):
                return RawItem(item_id, value)  # type: ignore[arg-type]  # not None here
        item = parse_item_message(self._task_type, key, value)
        assert value is not None  # parse_item_message refuses a message without one
        return RawItem(item.id, value)


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
