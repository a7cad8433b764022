"""The task-type contract: payloads in, label values out, with errors that name the field."""

from typing import Any

import pytest

from labelops.api.campaign import Task, TaskType
from labelops.api.tasktypes import LabelValidator, check_label_schema, payload_violations

PAIR = {"prompt": "p", "responses": [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}]}
RANK = {"prompt": "p", "responses": [{"id": r, "text": r} for r in ("a", "b", "c")]}


def task(**fields: Any) -> Task:
    return Task.model_validate({"instructions": "do it", **fields})


@pytest.mark.parametrize(
    ("spec", "payload", "value"),
    [
        ({"type": "pairwise"}, PAIR, {"preferred": "a"}),
        ({"type": "pairwise"}, PAIR, {"preferred": "tie", "rationale": "same"}),
        ({"type": "ranking"}, RANK, {"order": ["c", "a", "b"]}),
        ({"type": "rating", "scale": {"min": 1, "max": 7}}, {"text": "t"}, {"score": 7}),
        ({"type": "classification", "choices": ["x", "y"]}, {"text": "t"}, {"choice": "y"}),
        (
            {"type": "classification", "choices": ["x", "y"], "multiple": True},
            {"text": "t"},
            {"choices": ["x", "y"]},
        ),
        ({"type": "free-text", "minLength": 2, "maxLength": 5}, {"prompt": "p"}, {"text": "abc"}),
    ],
)
def test_valid_labels_pass(spec: dict[str, Any], payload: dict[str, Any], value: Any) -> None:
    assert LabelValidator(task(**spec)).violations(payload, value) == []


@pytest.mark.parametrize(
    ("spec", "payload", "value", "pointer"),
    [
        ({"type": "pairwise"}, PAIR, {"preferred": "c"}, "/value/preferred"),
        ({"type": "pairwise"}, PAIR, {"preferred": 1}, "/value/preferred"),
        ({"type": "pairwise"}, PAIR, {}, "/value"),
        ({"type": "ranking"}, RANK, {"order": ["a", "b"]}, "/value/order"),
        ({"type": "ranking"}, RANK, {"order": ["a", "a", "b"]}, "/value/order"),
        (
            {"type": "rating", "scale": {"min": 1, "max": 7}},
            {"text": "t"},
            {"score": 8},
            "/value/score",
        ),
        (
            {"type": "rating", "scale": {"min": 1, "max": 7}},
            {"text": "t"},
            {"score": 2.5},
            "/value/score",
        ),
        (
            {"type": "classification", "choices": ["x", "y"]},
            {"text": "t"},
            {"choice": "z"},
            "/value/choice",
        ),
        ({"type": "free-text", "maxLength": 3}, {"prompt": "p"}, {"text": "abcd"}, "/value/text"),
    ],
)
def test_invalid_labels_name_the_failing_field(
    spec: dict[str, Any], payload: dict[str, Any], value: Any, pointer: str
) -> None:
    found = LabelValidator(task(**spec)).violations(payload, value)
    assert found, "an invalid label was accepted"
    assert found[0].pointer == pointer
    assert found[0].message


def test_campaign_label_schema_applies_on_top_of_the_type() -> None:
    custom = {
        "type": "object",
        "properties": {"rationale": {"type": "string", "minLength": 10}},
        "required": ["rationale"],
    }
    validator = LabelValidator(task(type="pairwise", labelSchema=custom))
    assert validator.violations(PAIR, {"preferred": "a", "rationale": "long enough!"}) == []
    found = validator.violations(PAIR, {"preferred": "a", "rationale": "short"})
    assert [v.pointer for v in found] == ["/value/rationale"]
    assert "labelSchema" in found[0].message


def test_invalid_label_schema_is_reported_with_its_location() -> None:
    bad = task(type="pairwise", labelSchema={"type": "object", "properties": {"x": {"type": 5}}})
    problem = check_label_schema(bad)
    assert problem is not None
    assert problem.pointer.startswith("/spec/task/labelSchema")
    assert check_label_schema(task(type="pairwise")) is None


@pytest.mark.parametrize(
    ("task_type", "payload", "pointer"),
    [
        (
            TaskType.PAIRWISE,
            {"prompt": "p", "responses": [{"id": "a", "text": "x"}]},
            "/payload/responses",
        ),
        (TaskType.PAIRWISE, {"responses": PAIR["responses"]}, "/payload"),
        (
            TaskType.RANKING,
            {"prompt": "p", "responses": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]},
            "/payload/responses",
        ),
        (TaskType.RATING, {"prompt": "p"}, "/payload"),
        (TaskType.CLASSIFICATION, {"text": 3}, "/payload/text"),
        (TaskType.FREE_TEXT, "not an object", "/payload"),
    ],
)
def test_payloads_that_do_not_fit_the_type_are_refused(
    task_type: TaskType, payload: Any, pointer: str
) -> None:
    found = payload_violations(task_type, payload)
    assert found and found[0].pointer == pointer


def test_payloads_that_fit_pass() -> None:
    assert payload_violations(TaskType.PAIRWISE, PAIR) == []
    assert payload_violations(TaskType.RANKING, RANK) == []
    assert payload_violations(TaskType.RATING, {"text": "t"}) == []
