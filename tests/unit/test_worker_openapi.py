"""The worker's OpenAPI document: built per campaign, and the validator that holds the API to it."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from labelops.api.tasktypes import label_schema
from labelops.api.worker_configmap import WorkerConfig
from labelops.worker.openapi_document import build_document
from labelops.worker.openapi_validation import SpecValidator

TASKS: list[dict[str, Any]] = [
    {"type": "pairwise"},
    {"type": "ranking"},
    {"type": "rating", "scale": {"min": 0, "max": 10}},
    {"type": "classification", "choices": ["a", "b"], "multiple": True},
    {"type": "free-text", "minLength": 1, "maxLength": 50},
]


def config(task: dict[str, Any]) -> WorkerConfig:
    return WorkerConfig.model_validate(
        {
            "namespace": "ns",
            "name": "c",
            "task": {"instructions": "x", **task},
            "target": {"items": 5, "labelsPerItem": 2},
            "quotas": {},
            "schema": "lc_ns_c",
            "topics": {"items": "i", "labels": "l"},
            "consumerGroup": "g",
        }
    )


@pytest.mark.parametrize("task", TASKS, ids=[t["type"] for t in TASKS])
def test_every_schema_in_the_document_is_valid_json_schema(task: dict[str, Any]) -> None:
    document = build_document(config(task))
    assert document["openapi"] == "3.1.0"
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    value = dict(document["components"]["schemas"]["LabelValue"])
    value.pop("description")
    assert value == label_schema(config(task).task)


def test_every_operation_documents_its_errors() -> None:
    document = build_document(config(TASKS[0]))
    for path, item in document["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert "503" in codes, (method, path)
            if operation["security"]:
                assert "401" in codes, (method, path)
                assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]


def test_campaign_label_schema_is_added_with_all_of_and_keeps_its_own_references() -> None:
    own = {
        "$defs": {"odd": {"enum": [1, 3, 5]}},
        "properties": {"score": {"$ref": "#/$defs/odd"}},
    }
    task = {"type": "rating", "scale": {"min": 1, "max": 5}, "labelSchema": own}
    document = build_document(config(task))
    assert document["components"]["schemas"]["LabelValue"]["allOf"][1]["$defs"] == own["$defs"]
    spec = SpecValidator(document)
    assert spec.request_violations("submitLabel", {"value": {"score": 3}}) == []
    refused = spec.request_violations("submitLabel", {"value": {"score": 4}})
    assert [v.pointer for v in refused] == ["/value/score"]


def test_request_violations_point_at_the_member_that_is_wrong() -> None:
    spec = SpecValidator(build_document(config(TASKS[2])))
    found = spec.request_violations("submitLabel", {"value": {"score": 11, "extra": 1}, "x": 2})
    assert [v.pointer for v in found] == ["/value/extra", "/value/score", "/x"]
    assert [v.pointer for v in spec.request_violations("submitLabel", {"value": {}})] == [
        "/value/score"
    ]
    assert spec.request_violations("submitLabel", {"value": {"score": 10}}) == []


def test_response_violations_catch_undocumented_statuses_headers_and_shapes() -> None:
    spec = SpecValidator(build_document(config(TASKS[0])))
    assert spec.response_violations("getMe", 418, "application/json", {}, {}) == [
        "status 418 is not documented for getMe"
    ]
    unauthorized = {"type": "https://x", "title": "t", "status": 401, "detail": "d"}
    assert spec.response_violations("getMe", 401, "application/problem+json", {}, unauthorized) == [
        "header WWW-Authenticate is missing"
    ]
    shapes = spec.response_violations("getHealth", 200, "application/json", {}, {"status": "x"})
    assert shapes and shapes[0].startswith("/status")
    assert spec.response_violations("claimTask", 204, "", {}, None) == []


def test_a_receipt_may_carry_the_next_task_when_asked_for() -> None:
    spec = SpecValidator(build_document(config({"type": "pairwise"})))
    submit = spec.operations["submitLabel"].spec
    [next_parameter] = [p for p in submit["parameters"] if p["name"] == "next"]
    assert next_parameter["in"] == "query" and next_parameter["schema"]["type"] == "boolean"
    receipt = {
        "labelId": "L",
        "itemId": "i1",
        "labeler": "ann",
        "createdAt": "2026-01-02T03:04:05Z",
        "replayed": False,
        "itemCompleted": False,
    }
    task = {
        "id": "i2",
        "payload": {
            "prompt": "p",
            "responses": [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}],
        },
        "priority": 0,
        "leaseExpiresAt": "2026-01-02T03:14:05Z",
    }
    for body in (receipt, {**receipt, "next": task}, {**receipt, "next": None}):
        assert spec.response_violations("submitLabel", 201, "application/json", {}, body) == []
    wrong = {**receipt, "next": {"id": "i2"}}
    assert spec.response_violations("submitLabel", 201, "application/json", {}, wrong)
