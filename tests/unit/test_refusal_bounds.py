"""A refusal quotes the refused value: bounded, and with NUL spelled out, so a hostile value
never becomes a 1 MiB problem detail or a dead letter PostgreSQL cannot store."""

from __future__ import annotations

from labelops.api.campaign import Task
from labelops.api.tasktypes import MAX_MESSAGE_CHARS, LabelValidator, Violation, bounded


def test_a_long_message_is_cut_and_says_how_much() -> None:
    text = bounded("'" + "i" * 1_000_000 + "' is too long")
    assert len(text) <= MAX_MESSAGE_CHARS
    assert text.endswith(f"... ({1_000_014 - MAX_MESSAGE_CHARS + 40} more characters)")
    assert bounded("short") == "short"


def test_nul_is_spelled_out_in_pointer_and_message() -> None:
    violation = Violation("/payload/k\x00", "key 'k\x00' is not allowed")
    assert "\x00" not in violation.pointer + violation.message
    assert violation.pointer == "/payload/k\\u0000"


def test_a_megabyte_label_is_refused_in_a_few_hundred_characters() -> None:
    task = Task.model_validate({"type": "free-text", "instructions": "x", "maxLength": 10})
    violations = LabelValidator(task).violations({}, {"text": "a" * 1_000_000})
    assert [v.pointer for v in violations] == ["/value/text"]
    assert len(violations[0].message) <= MAX_MESSAGE_CHARS
