"""Item and prediction messages: the fast path answers exactly as the explaining path does,
and every refusal names the field and what is allowed."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from labelops.api.campaign import Task, TaskType
from labelops.worker.ingest_messages import ItemMessages, PredictionMessages, parse_item_message

TASKS = {
    TaskType.CLASSIFICATION: Task.model_validate(
        {"type": "classification", "instructions": "?", "choices": ["yes", "no"]}
    ),
    TaskType.PAIRWISE: Task.model_validate({"type": "pairwise", "instructions": "?"}),
    TaskType.RANKING: Task.model_validate({"type": "ranking", "instructions": "?"}),
    TaskType.RATING: Task.model_validate(
        {"type": "rating", "instructions": "?", "scale": {"min": 1, "max": 5}}
    ),
    TaskType.FREE_TEXT: Task.model_validate({"type": "free-text", "instructions": "?"}),
}


def message(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


MODEL = {"version": "v1", "prediction": {"choice": "yes"}, "confidence": 0.75}
GOLD = {"value": {"choice": "no"}}
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
    (TaskType.CLASSIFICATION, b"a", message(id="a", payload={"text": "t"}, model=MODEL)),
    (TaskType.CLASSIFICATION, b"a", message(id="a", payload={"text": "t"}, gold=GOLD)),
    (
        TaskType.CLASSIFICATION,
        b"a",
        message(id="a", payload={"text": "t"}, gold={"value": {"choice": "maybe"}}),
    ),
    (
        TaskType.CLASSIFICATION,
        b"a",
        message(id="a", payload={"text": "t"}, model={**MODEL, "confidence": 1.5}),
    ),
    (
        TaskType.CLASSIFICATION,
        b"a",
        message(id="a", payload={"text": "t"}, model={"prediction": "yes", "confidence": 0.5}),
    ),
    (
        TaskType.PAIRWISE,
        b"a",
        message(id="a", payload=PAIR, model={**MODEL, "prediction": {"preferred": "b"}}),
    ),
    (
        TaskType.PAIRWISE,
        b"a",
        message(id="a", payload=PAIR, model={**MODEL, "prediction": {"preferred": "c"}}),
    ),
    (TaskType.PAIRWISE, b"a", message(id="a", payload=PAIR, gold={"value": {"preferred": "z"}})),
    (
        TaskType.RANKING,
        b"a",
        message(id="a", payload=PAIR, gold={"value": {"order": ["b", "a"]}}),
    ),
]


def explained(task_type: TaskType, key: bytes | None, value: bytes | None) -> str:
    try:
        return "accepted " + parse_item_message(TASKS[task_type], key, value).id
    except ValueError as err:
        return "refused " + str(err)


def fast(task_type: TaskType, key: bytes | None, value: bytes | None) -> str:
    try:
        item = ItemMessages(TASKS[task_type]).accept(key, value)
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


def test_item_labels_are_checked_against_the_item_itself() -> None:
    pairwise = TASKS[TaskType.PAIRWISE]
    bad = message(id="a", payload=PAIR, model={**MODEL, "prediction": {"preferred": "c"}})
    with pytest.raises(ValueError, match=re.escape("model.prediction is not a label value")) as err:
        parse_item_message(pairwise, b"a", bad)
    assert "/model/prediction/preferred: 'c' is not one of 'a', 'b', 'tie'" in str(err.value)
    wrong_gold = message(id="a", payload={"text": "t"}, gold={"value": {"choice": "maybe"}})
    with pytest.raises(ValueError, match="/gold/value/choice: 'maybe' is not one of"):
        parse_item_message(TASKS[TaskType.CLASSIFICATION], b"a", wrong_gold)
    item = parse_item_message(
        TASKS[TaskType.CLASSIFICATION],
        b"a",
        message(id="a", payload={"text": "t"}, model=MODEL, gold=GOLD),
    )
    assert (item.model_version, item.model_prediction, item.model_confidence) == (
        "v1",
        {"choice": "yes"},
        0.75,
    )
    assert item.gold_value == {"choice": "no"}


def prediction(item_id: str = "a", **model: Any) -> bytes:
    return json.dumps({"id": item_id, "model": {**MODEL, **model}}).encode()


def test_a_well_formed_prediction_is_accepted_as_it_came() -> None:
    checker = PredictionMessages(TASKS[TaskType.CLASSIFICATION])
    raw = prediction()
    assert checker.accept(b"a", raw) == ("a", raw)
    assert checker.accept(b"a", prediction(confidence=0)).id == "a"
    assert checker.accept(b"a", prediction(confidence=1)).id == "a"


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"a", None, "no value (tombstones cannot delete predictions)"),
        (b"a", b"{", "value is not JSON"),
        (b"a", prediction(confidence=1.01), "/model/confidence: 1.01 is greater than the maximum"),
        (b"a", prediction(confidence=-0.1), "/model/confidence: -0.1 is less than the minimum"),
        (b"a", prediction(confidence="high"), "/model/confidence: 'high' is not of type 'number'"),
        (
            b"a",
            b'{"id": "a", "model": {"version": "v1", "prediction": {"choice": "yes"},'
            b' "confidence": NaN}}',
            "NaN is not a JSON number",
        ),
        (
            b"a",
            b'{"id": "a", "model": {"version": "v1", "prediction": {"choice": "yes"},'
            b' "confidence": Infinity}}',
            "Infinity is not a JSON number",
        ),
        (
            b"a",
            b'{"id": "a", "model": {"version": "v1", "prediction": {"choice": "yes"},'
            b' "confidence": 1e999}}',
            "/model/confidence: inf is greater than the maximum of 1",
        ),
        (b"a", prediction(version=""), "/model/version: '' should be non-empty"),
        (b"a", prediction(version=3), "/model/version: 3 is not of type 'string'"),
        (b"a", prediction(prediction={"choice": "maybe"}), "/model/prediction/choice: 'maybe'"),
        (b"a", prediction(prediction="yes"), "/model/prediction: 'yes' is not of type 'object'"),
        (b"a", json.dumps({"id": "a"}).encode(), "/: 'model' is a required property"),
        (b"a", json.dumps({"id": "a", "model": []}).encode(), "/model: [] is not of type"),
        (b"b", prediction(), "message key 'b' does not match id 'a'"),
        (None, prediction(), "message has no key"),
    ],
)
def test_a_bad_prediction_is_refused_with_its_reason(
    key: bytes | None, value: bytes | None, reason: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        PredictionMessages(TASKS[TaskType.CLASSIFICATION]).accept(key, value)


def test_a_prediction_must_fit_the_campaigns_own_label_schema() -> None:
    task = Task.model_validate(
        {
            "type": "free-text",
            "instructions": "?",
            "labelSchema": {"properties": {"text": {"pattern": "^[a-z]+$"}}},
        }
    )
    checker = PredictionMessages(task)
    assert checker.accept(b"a", prediction(prediction={"text": "fine"})).id == "a"
    with pytest.raises(ValueError, match="/model/prediction/text: labelSchema"):
        checker.accept(b"a", prediction(prediction={"text": "Not 4 this"}))
