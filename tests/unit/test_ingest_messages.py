"""The fast path of item messages answers exactly as the explaining path does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labelops.api.campaign import TaskType
from labelops.worker.ingest_messages import ItemMessages, parse_item_message


def message(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


PAIR = {"prompt": "p", "responses": [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}]}
SAME_IDS = {"prompt": "p", "responses": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}

CASES: list[tuple[TaskType, bytes | None, bytes | None]] = [
    (TaskType.CLASSIFICATION, b"a", message(id="a", payload={"text": "t"})),
    (TaskType.CLASSIFICATION, b"a", message(id="a", payload={"text": "t"}, priority=-5)),
    (TaskType.CLASSIFICATION, b"a", message(id="a", payload={"text": "t"}, priority=2**31)),
    (TaskType.CLASSIFICATION, b"a", message(id="a", payload={"text": "t"}, priority=True)),
    (TaskType.CLASSIFICATION, b"a", message(id="a", payload={"text": 3})),
    (TaskType.CLASSIFICATION, b"a", message(id="a", payload={"text": "nul \x00"})),
    (TaskType.CLASSIFICATION, b"a", message(id="a", payload={"text": "t", "x": [[[[1]]]]})),
    (TaskType.CLASSIFICATION, b"a", message(id="a", payload={"text": "t", "d": [[]] * 70})),
    (TaskType.CLASSIFICATION, b"b", message(id="a", payload={"text": "t"})),
    (TaskType.CLASSIFICATION, None, message(id="a", payload={"text": "t"})),
    (TaskType.CLASSIFICATION, b"a", None),
    (TaskType.CLASSIFICATION, b".", message(id=".", payload={"text": "t"})),
    (TaskType.CLASSIFICATION, b"a", b'{"id": "a", "payload": {"text": "t"}, "priority": NaN}'),
    (TaskType.CLASSIFICATION, b"a", b'{"id": "a", "payload": {"text": "\\ud800"}}'),
    (TaskType.CLASSIFICATION, b"a", b"\xff"),
    (TaskType.CLASSIFICATION, b"a", message(id="a", payload={"text": "t"}, model=[])),
    (
        TaskType.CLASSIFICATION,
        b"a",
        message(id="a", payload={"text": "t"}, model={"confidence": "high"}),
    ),
    (TaskType.PAIRWISE, b"a", message(id="a", payload=PAIR)),
    (TaskType.PAIRWISE, b"a", message(id="a", payload=SAME_IDS)),
    (TaskType.RANKING, b"a", message(id="a", payload=SAME_IDS)),
    (TaskType.RATING, b"a", message(id="a", payload={"prompt": "p"})),
    (TaskType.FREE_TEXT, b"\xc3\xa9", message(id="\u00e9", payload={"prompt": "p"})),
]


def explained(task_type: TaskType, key: bytes | None, value: bytes | None) -> str:
    try:
        return "accepted " + parse_item_message(task_type, key, value).id
    except ValueError as err:
        return "refused " + str(err)


def fast(task_type: TaskType, key: bytes | None, value: bytes | None) -> str:
    try:
        item = ItemMessages(task_type).accept(key, value)
    except ValueError as err:
        return "refused " + str(err)
    assert item.raw == value, "the raw message goes to the database unchanged"
    return "accepted " + item.id


@pytest.mark.parametrize(("task_type", "key", "value"), CASES)
def test_the_fast_path_agrees_with_the_explaining_path(
    task_type: TaskType, key: bytes | None, value: bytes | None
) -> None:
    assert fast(task_type, key, value) == explained(task_type, key, value)


def test_both_outcomes_occur_in_the_cases() -> None:
    outcomes = {explained(*case).split()[0] for case in CASES}
    assert outcomes == {"accepted", "refused"}
