"""`labelops export` against the real PostgreSQL: every format, line for line, gold left out."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from test_store_support import migrated_schema, open_pool, query

from labelops.report.export import (
    RlhfTally,
    write_export,
    write_jsonl,
    write_rlhf,
    write_rlhf_records,
)
from labelops.store.items import ItemRecord, write_ingest_batch
from labelops.store.queries import Queries

pytestmark = pytest.mark.integration

CREATED = dt.datetime(2026, 12, 1, 12, 30, 15, 250000, tzinfo=dt.UTC)


def pair(n: int) -> dict[str, Any]:
    return {
        "prompt": f'Question {n}? "quoted" \\ back\\slash\ttab',
        "responses": [{"id": "a", "text": f"first {n}"}, {"id": "b", "text": "second ü"}],
    }


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "export") as name:
        yield name


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn) as opened:
        yield opened


def seed(
    pool: ConnectionPool[Any],
    schema: str,
    labels: dict[str, list[tuple[str, str, str]]],
    gold: dict[str, Any] | None = None,
) -> None:
    """Items (id -> [(labeler, preferred, origin)]) with their labels, all completed."""
    records = [ItemRecord(item_id, pair(n)) for n, item_id in enumerate(labels)]
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        write_ingest_batch(cur, Queries(schema), records, [])
        for item_id, value in (gold or {}).items():
            cur.execute(
                f'UPDATE "{schema}".items SET gold_value = %s WHERE external_id = %s',
                (Jsonb(value), item_id),
            )
        for item_id, answers in labels.items():
            for ordinal, (labeler, preferred, origin) in enumerate(answers, start=1):
                cur.execute(
                    f'INSERT INTO "{schema}".labels'  # the test's own generated name
                    " (id, item_id, labeler, value, origin, ordinal, created_at)"
                    f' SELECT %s, id, %s, %s, %s, %s, %s FROM "{schema}".items'
                    " WHERE external_id = %s",
                    (
                        uuid.uuid5(uuid.NAMESPACE_URL, f"{item_id}/{labeler}"),
                        labeler,
                        Jsonb({"preferred": preferred}),
                        origin,
                        ordinal,
                        CREATED,
                        item_id,
                    ),
                )
            cur.execute(
                f'UPDATE "{schema}".items SET label_count = %s, completed_at = now()'
                " WHERE external_id = %s",
                (len(answers), item_id),
            )


def export(pool: ConnectionPool[Any], schema: str, fmt: str, method: str = "majority") -> Any:
    out = io.BytesIO()
    with pool.connection() as conn:
        result = write_export(conn, schema, fmt, out, method)
    text = out.getvalue().decode()
    assert text == "" or text.endswith("\n")
    return result, [json.loads(line) for line in text.splitlines()]


def test_jsonl_has_one_exact_line_per_label_in_item_order(
    pool: ConnectionPool[Any], schema: str
) -> None:
    seed(pool, schema, {"i1": [("ann", "a", "human"), ("bob", "b", "human")], "i2": []})
    count, lines = export(pool, schema, "jsonl")
    assert count == 2
    assert lines == [
        {
            "label_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"i1/{who}")),
            "item_id": "i1",
            "labeler": who,
            "value": {"preferred": preferred},
            "origin": "human",
            "created_at": "2026-12-01T12:30:15.25+00:00",
            "modelVersion": None,
            "confidence": None,
            "generation": None,
            "specDigest": None,
            "payload": pair(0),
        }
        for who, preferred in (("ann", "a"), ("bob", "b"))
    ]


def test_gold_items_are_never_exported(pool: ConnectionPool[Any], schema: str) -> None:
    seed(
        pool,
        schema,
        {"g": [("ann", "a", "human")], "i": [("ann", "b", "human")]},
        gold={"g": {"preferred": "a"}},
    )
    _, lines = export(pool, schema, "jsonl")
    assert [line["item_id"] for line in lines] == ["i"]
    _, consolidated = export(pool, schema, "consolidated")
    assert [line["itemId"] for line in consolidated] == ["i"]
    _, pairs = export(pool, schema, "rlhf")
    assert [line["id"] for line in pairs] == ["i"]


def test_consolidated_lines_per_completed_item(pool: ConnectionPool[Any], schema: str) -> None:
    seed(
        pool,
        schema,
        {
            "i1": [("ann", "b", "human"), ("bob", "b", "human"), ("cy", "a", "human")],
            "i2": [("model:v1", "a", "machine")],
            "i3": [("ann", "a", "human"), ("bob", "b", "human")],
        },
    )
    count, lines = export(pool, schema, "consolidated")
    assert count == 3
    by_id = {line["itemId"]: line for line in lines}
    assert by_id["i1"] == {
        "itemId": "i1",
        "value": {"preferred": "b"},
        "confidence": round(2 / 3, 6),
        "method": "majority",
        "labels": 3,
        "agreement": round(2 / 3, 6),
        "origin": "human",
        "disputed": False,
    }
    assert (by_id["i2"]["origin"], by_id["i2"]["labels"]) == ("machine", 0)
    assert by_id["i3"]["disputed"] is True
    _, weighted = export(pool, schema, "consolidated", "weighted")
    assert {line["method"] for line in weighted} == {"weighted"}
    assert {line["itemId"]: line["value"] for line in weighted}["i1"] == {"preferred": "b"}


def test_rlhf_pairs_follow_the_consolidated_preference(
    pool: ConnectionPool[Any], schema: str
) -> None:
    seed(
        pool,
        schema,
        {
            "i1": [("ann", "b", "human"), ("bob", "b", "human"), ("cy", "a", "human")],
            "i2": [("ann", "tie", "human")],
        },
    )
    tally, lines = export(pool, schema, "rlhf")
    assert isinstance(tally, RlhfTally) and (tally.written, tally.ties) == (1, 1)
    [line] = lines
    assert (line["id"], line["chosen"], line["rejected"]) == ("i1", "second ü", "first 0")
    assert (line["chosen_id"], line["rejected_id"], line["labels"]) == ("b", "a", 3)
    assert line["votes"] == {"b": 2, "a": 1}
    assert line["prompt"] == pair(0)["prompt"]


def test_an_empty_campaign_exports_nothing(pool: ConnectionPool[Any], schema: str) -> None:
    assert export(pool, schema, "jsonl") == (0, [])
    assert query(pool, schema, "SELECT count(*) FROM {schema}.labels") == [(0,)]


def test_jsonl_read_in_many_ranges_by_several_connections_is_the_same_file(
    pool: ConnectionPool[Any], schema: str
) -> None:
    labels = {f"i{n:02}": [("ann", "a", "human"), ("bob", "b", "human")] for n in range(25)}
    labels["i07"] = []  # an item without labels: a range may be empty
    seed(pool, schema, labels)
    with pool.connection() as conn:
        whole = io.BytesIO()
        assert write_jsonl(conn, schema, whole, streams=1) == 48
        for streams, per_range in ((2, 3), (3, 1), (4, 7)):
            split = io.BytesIO()
            count = write_jsonl(conn, schema, split, streams=streams, labels_per_range=per_range)
            assert (count, split.getvalue()) == (48, whole.getvalue()), (streams, per_range)
    ids = [json.loads(line)["item_id"] for line in whole.getvalue().splitlines()]
    assert ids == sorted(ids) and len(set(ids)) == 24


def seed_raw(
    pool: ConnectionPool[Any],
    schema: str,
    items: dict[str, tuple[Any, list[Any]]],
) -> None:
    """Completed items as they may be stored (id -> (payload, label values)), past the
    ingest's checks: the export's fast path must notice what it cannot take."""
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        for item_id, (payload, values) in items.items():
            cur.execute(
                f'INSERT INTO "{schema}".items (external_id, payload, label_count, completed_at)'
                " VALUES (%s, %s, %s, now())",
                (item_id, Jsonb(payload), len(values)),
            )
            for ordinal, value in enumerate(values, start=1):
                cur.execute(
                    f'INSERT INTO "{schema}".labels (id, item_id, labeler, value, ordinal)'
                    f' SELECT %s, id, %s, %s, %s FROM "{schema}".items WHERE external_id = %s',
                    (uuid.uuid4(), f"labeler-{ordinal}", Jsonb(value), ordinal, item_id),
                )


AWKWARD = 'quote " back\\slash \x01\x1f\t\n\r\x7f \u2028 ü 😀 </script> \\u0000'


def test_rlhf_by_majority_is_byte_identical_to_the_records_path(
    pool: ConnectionPool[Any], schema: str
) -> None:
    def plain(n: int, a: str = "a", b: str = "b") -> dict[str, Any]:
        return {
            "prompt": f"{AWKWARD} {n}",
            "responses": [{"id": a, "text": f"{AWKWARD} one"}, {"id": b, "text": "two"}],
        }

    a, b, tie = {"preferred": "a"}, {"preferred": "b"}, {"preferred": "tie"}
    items: dict[str, tuple[Any, list[Any]]] = {
        f"p{n:02}": (plain(n), votes)
        for n, votes in enumerate(
            [[a], [b, b, a], [a, b], [tie, tie, a], [b, {"preferred": "b", "why": AWKWARD}], [tie]]
        )
    }
    items.update(
        {
            AWKWARD: (plain(90, a=AWKWARD, b="ü"), [{"preferred": AWKWARD}]),
            "numeric-vote": (plain(91, a="1", b="2"), [{"preferred": 1}, {"preferred": 1}]),
            "unknown-vote": (plain(92), [{"preferred": "c"}]),
            "no-vote": (plain(93), [{"other": "a"}]),
            # Not plain pairs: the slow way, as before.
            "number-prompt": ({"prompt": 1e2, "responses": plain(94)["responses"]}, [a]),
            "object-prompt": (
                {"prompt": {"x": [1.5, "y"]}, "responses": plain(95)["responses"]},
                [b],
            ),
            "three": (
                {"prompt": "p", "responses": [*plain(96)["responses"], {"id": "c", "text": "3"}]},
                [{"preferred": "c"}],
            ),
            "number-text": (
                {"prompt": "p", "responses": [{"id": "a", "text": 2.50}, {"id": "b", "text": "t"}]},
                [a],
            ),
            "list-payload": ([1, "two"], [{"other": "a"}]),
            "extra-fields": (
                {
                    "prompt": "p",
                    "meta": {"k": 1},
                    "responses": [
                        {"id": "a", "text": "x", "model": "m1"},
                        {"id": "b", "text": "y"},
                    ],
                },
                [b],
            ),
        }
    )
    seed_raw(pool, schema, items)
    with pool.connection() as conn:
        reference = io.BytesIO()
        expected = write_rlhf_records(conn, schema, "majority", reference)
        assert (expected.written, expected.ties) == (11, 5)
        for streams, per_range in ((1, 20_000), (2, 1), (3, 4)):
            fast = io.BytesIO()
            tally = write_rlhf(
                conn, schema, "majority", fast, streams=streams, labels_per_range=per_range
            )
            assert (tally.written, tally.ties) == (expected.written, expected.ties)
            assert fast.getvalue() == reference.getvalue(), (streams, per_range)


def test_postgresql_writes_every_json_string_as_orjson_does(
    pool: ConnectionPool[Any],
) -> None:
    text = "".join(chr(c) for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF)
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT to_json(%s::text)::text, (jsonb_build_object('s', %s::text) -> 's')::text",
            (text, text),
        ).fetchone()
    assert row is not None
    expected = orjson.dumps(text).decode()
    assert row[0] == expected
    assert row[1] == expected
