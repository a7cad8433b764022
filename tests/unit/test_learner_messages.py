"""The learner's reading of item and label messages, its predictions, and its state."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labelops.api.campaign import TaskType
from labelops.learner.messages import (
    HumanLabel,
    ItemMessage,
    Unusable,
    parse_item,
    parse_label,
    prediction_message,
)
from labelops.learner.state import LearnerState


def encoded(document: Any) -> bytes:
    return json.dumps(document).encode()


def label_message(origin: str = "human", **fields: Any) -> bytes:
    return encoded(
        {
            "labelId": "3b1c",
            "campaign": {"namespace": "ns", "name": "sms"},
            "itemId": "sms_1",
            "labeler": "alice",
            "origin": origin,
            "value": {"choice": "spam"},
            "ordinal": 1,
            "labelsPerItem": 1,
            "createdAt": "2026-12-01T00:00:00Z",
            **fields,
        }
    )


def test_an_item_message_gives_id_and_payload() -> None:
    value = encoded({"id": "sms_1", "payload": {"text": "WIN"}, "priority": 3})
    assert parse_item(TaskType.CLASSIFICATION, value) == ItemMessage("sms_1", {"text": "WIN"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "no value"),
        (b"{", "not JSON"),
        (encoded([1]), "not a JSON object"),
        (encoded({"payload": {"text": "x"}}), "id=None: must be a non-empty string"),
        (encoded({"id": "a", "payload": {"prompt": "x"}}), "payload does not fit"),
    ],
)
def test_an_unusable_item_message_says_why(value: bytes | None, expected: str) -> None:
    with pytest.raises(Unusable, match=expected):
        parse_item(TaskType.CLASSIFICATION, value)


def test_human_labels_are_read_and_machine_labels_skipped() -> None:
    assert parse_label(label_message()) == HumanLabel("3b1c", "sms_1", {"choice": "spam"})
    assert parse_label(label_message(origin="machine")) is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"origin": None}, "origin=None: must be a string"),
        ({"labelId": ""}, "labelId='': must be a non-empty string"),
        ({"itemId": 7}, "itemId=7: must be a non-empty string"),
    ],
)
def test_an_unusable_label_message_names_the_field(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(Unusable, match=expected):
        parse_label(label_message(**fields))


def test_a_prediction_message_is_keyed_by_item_id_in_the_predictions_shape() -> None:
    key, value = prediction_message("sms_1", "builtin-000000050", {"choice": "spam"}, 0.97)
    assert key == b"sms_1"
    assert json.loads(value) == {
        "id": "sms_1",
        "model": {
            "version": "builtin-000000050",
            "prediction": {"choice": "spam"},
            "confidence": 0.97,
        },
    }


@pytest.mark.parametrize("confidence", [-0.1, 1.01, float("nan")])
def test_a_confidence_outside_0_1_is_never_published(confidence: float) -> None:
    with pytest.raises(ValueError, match="must be a number in \\[0, 1\\]"):
        prediction_message("a", "v", {"choice": "x"}, confidence)


def test_state_counts_a_relayed_twice_label_once_and_only_labels_of_known_items() -> None:
    state = LearnerState()
    state.add_label(HumanLabel("l1", "a", {"choice": "spam"}))
    state.add_label(HumanLabel("l1", "a", {"choice": "spam"}))  # relayed again
    state.add_label(HumanLabel("l2", "b", {"choice": "ham"}))
    assert state.human_labels == 0  # no item read yet
    state.add_item(ItemMessage("a", {"text": "WIN"}))
    state.add_item(ItemMessage("c", {"text": "hi"}))
    assert state.human_labels == 1
    assert state.unlabeled() == [("c", {"text": "hi"})]


def test_state_scores_each_item_once_per_version_and_again_when_its_payload_changes() -> None:
    state = LearnerState()
    state.add_item(ItemMessage("a", {"text": "one"}))
    state.add_item(ItemMessage("b", {"text": "two"}))
    state.mark_scored(["a", "b"], "v1")
    assert state.to_score("v1") == []
    state.add_item(ItemMessage("b", {"text": "two"}))  # the same payload again
    assert state.to_score("v1") == []
    state.add_item(ItemMessage("b", {"text": "changed"}))
    assert state.to_score("v1") == [("b", {"text": "changed"})]
    assert [i for i, _ in state.to_score("v2")] == ["a", "b"]
