"""The store's pure parts: item message parsing, quota clocks, SQL composition, payloads."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest

from labelops.api.campaign import Task
from labelops.api.tasktypes import Violation
from labelops.store.claims import model_hint, next_utc_midnight, seconds_until_utc_midnight
from labelops.store.errors import InvalidLabel, QuotaExceeded
from labelops.store.leased_payloads import LeasedPayloads
from labelops.store.migrations import available_migrations
from labelops.store.progress import PROGRESS_SHARDS
from labelops.store.queries import Queries
from labelops.store.storable_json import storage_violations
from labelops.worker.ingest import parse_item_message

CLASSIFICATION = Task.model_validate(
    {"type": "classification", "instructions": "?", "choices": ["yes", "no"]}
)


def message(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def test_a_well_formed_item_message_becomes_an_item() -> None:
    rating = Task.model_validate(
        {"type": "rating", "instructions": "?", "scale": {"min": 1, "max": 5}}
    )
    item = parse_item_message(
        rating,
        b"i-1",
        message(
            id="i-1",
            payload={"text": "t"},
            priority=4,
            model={"version": "v1", "prediction": {"score": 3}, "confidence": 0.5},
            extra="ignored",
        ),
    )
    assert (item.id, item.payload, item.priority) == ("i-1", {"text": "t"}, 4)
    assert (item.model_prediction, item.model_confidence) == ({"score": 3}, 0.5)
    assert item.model_version == "v1"


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"a", None, "no value"),
        (b"a", b"\xff", "not UTF-8"),
        (b"a", b"[1,", "not JSON"),
        (b"a", b"[]", "not an item message: /: [] is not of type 'object'"),
        (b"a", message(id="", payload={"text": "t"}), "/id: '' should be non-empty"),
        (b".", message(id=".", payload={"text": "t"}), "id '.' cannot be an item id"),
        (b"..", message(id="..", payload={"text": "t"}), "id '..' cannot be an item id"),
        (b"a", message(id="a", payload={"text": "t"}, priority=2**31), "/priority"),
        (b"a", message(id="a", payload={"text": "t"}, priority=True), "/priority"),
        (b"a", message(id="a", payload={"text": "t"}, model=[]), "/model"),
        (None, message(id="a", payload={"text": "t"}), "no key"),
        (b"b", message(id="a", payload={"text": "t"}), "key 'b' does not match id 'a'"),
        (b"a", message(id="a", payload={"prompt": "p"}), "/payload: 'text' is a required"),
        (b"a", message(id="a", payload={"text": "\x00"}), "/payload/text: contains the NUL"),
        (b"a", b'{"id": "a", "payload": {"text": "t"}, "priority": Infinity}', "Infinity"),
        (b"a", b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    ],
)
def test_a_malformed_item_message_is_refused_with_its_reason(
    key: bytes | None, value: bytes | None, reason: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_item_message(CLASSIFICATION, key, value)


def test_deep_nesting_is_refused_at_its_pointer() -> None:
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    [violation] = storage_violations({"a": deep}, "/payload")
    assert violation.pointer == "/payload/a" + "/0" * 64
    assert violation.message == "nests deeper than 64 levels"


def test_nul_characters_are_found_with_their_pointer() -> None:
    value = {"a/b": ["ok", "bad\x00"], "k\x00": 1}
    assert storage_violations(value, "/value") == [
        Violation("/value/a~1b/1", "contains the NUL character (\\u0000), which cannot be stored"),
        Violation(
            "/value/k\x00", "key contains the NUL character (\\u0000), which cannot be stored"
        ),
    ]
    assert storage_violations({"fine": [1, "x"]}, "/value") == []


def test_the_daily_quota_resets_at_the_next_utc_midnight() -> None:
    now = dt.datetime(2026, 3, 1, 23, 59, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert next_utc_midnight(now) == dt.datetime(2026, 3, 3, tzinfo=dt.UTC)
    almost = dt.datetime(2026, 3, 1, 23, 59, 59, 500000, tzinfo=dt.UTC)
    assert seconds_until_utc_midnight(almost) == 1


def test_quota_errors_never_ask_to_retry_immediately() -> None:
    assert QuotaExceeded("max_leases_per_labeler", 0, "m").retry_after == 1


def test_invalid_label_names_each_pointer() -> None:
    err = InvalidLabel([Violation("/value/choice", "bad"), Violation("/value", "worse")])
    assert str(err) == "the label does not fit the task: /value/choice: bad; /value: worse"


def test_model_hint_keeps_only_what_the_item_had() -> None:
    assert model_hint(None, None) is None
    assert model_hint("x", None) == {"prediction": "x"}
    assert model_hint(None, 0.0) == {"confidence": 0.0}


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in available_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_the_initial_migration_creates_as_many_shards_as_the_code_spreads_over() -> None:
    initial = available_migrations()[0].sql_text
    match = re.search(
        r"INSERT INTO progress_shards \(shard\) SELECT generate_series\(0, (\d+)\)", initial
    )
    assert match is not None
    assert int(match.group(1)) + 1 == PROGRESS_SHARDS


def test_statements_quote_the_schema_name() -> None:
    queries = Queries('we"ird')
    assert b'"we""ird"."items"' in queries.item_to_label
    assert b'"we""ird"."accept_label"(' in queries.accept_label
    assert b'"we""ird"."progress_shards"' in queries.bump_progress


def test_leased_payloads_are_bounded_and_keep_only_small_payloads() -> None:
    leased = LeasedPayloads(max_entries=2, max_payload_chars=100)
    leased.remember("ann", "i1", {"text": "one"}, 20)
    leased.remember("ann", "i2", {"text": "two"}, 20)
    leased.remember("bob", "i1", {"text": "one"}, 20)
    assert leased.get("ann", "i1") is None, "the oldest entry made room"
    assert leased.get("ann", "i2") == {"text": "two"}
    assert leased.get("bob", "i2") is None, "entries are per labeler"
    leased.remember("ann", "big", {"text": "x" * 200}, 210)
    assert leased.get("ann", "big") is None
    leased.forget("ann", "i2")
    leased.forget("ann", "never-there")
    assert len(leased) == 1
