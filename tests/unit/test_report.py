"""What `labelops status` and `labelops export` show, from plain data."""

import datetime as dt
import json
from collections.abc import Iterator

import pytest

from labelops.report.export import (
    ItemLabels,
    LabelRow,
    RlhfTally,
    consolidated_records,
    origin_of,
    parse_item_line,
    read_ahead,
    rlhf_lines,
    rlhf_pair,
    rlhf_record,
    write_lines,
)
from labelops.report.status_report import campaign_row, progress_bar, render_table

PAYLOAD = {"prompt": "Why?", "responses": [{"id": "a", "text": "good"}, {"id": "b", "text": "bad"}]}


def label(item: str, labeler: str, preferred: str) -> LabelRow:
    return LabelRow("id-" + labeler, item, PAYLOAD, labeler, {"preferred": preferred}, "human", "t")


def test_majority_preference_becomes_chosen_and_rejected_with_agreement() -> None:
    record = rlhf_record([label("i1", "x", "b"), label("i1", "y", "b"), label("i1", "z", "a")])
    assert record is not None
    assert (record["chosen"], record["rejected"]) == ("bad", "good")
    assert record["agreement"] == round(2 / 3, 4)
    assert record["votes"] == {"b": 2, "a": 1}


def test_ties_are_left_out_and_counted() -> None:
    rows = [
        label("i1", "x", "a"),
        label("i1", "y", "b"),
        label("i2", "x", "tie"),
        label("i3", "x", "a"),
    ]
    tally = RlhfTally()
    lines = [json.loads(line) for line in rlhf_lines(rows, tally)]
    assert [r["id"] for r in lines] == ["i3"]
    assert (tally.written, tally.ties) == (1, 2)


def item(item_id: str, *answers: tuple[str, str, str]) -> ItemLabels:
    return ItemLabels(
        item_id, PAYLOAD, [(lb, {"preferred": v}, origin) for lb, v, origin in answers]
    )


def test_consolidated_records_by_majority_name_value_share_and_origin() -> None:
    items = [
        item("i1", ("x", "b", "human"), ("y", "b", "human"), ("z", "a", "human")),
        item("i2", ("model:v1", "a", "machine")),
        item("i3", ("x", "a", "human"), ("model:v1", "a", "machine")),
    ]
    records = [r for _, r in consolidated_records(items, "majority", whole_campaign=False)]
    assert [r["itemId"] for r in records] == ["i1", "i2", "i3"]
    first = records[0]
    assert first["value"] == {"preferred": "b"}
    assert first["confidence"] == round(2 / 3, 6) and first["agreement"] == round(2 / 3, 6)
    assert (first["method"], first["labels"], first["origin"]) == ("majority", 3, "human")
    assert first["disputed"] is False
    assert (records[1]["origin"], records[1]["labels"]) == ("machine", 0)
    assert records[2]["origin"] == "mixed"


def test_a_tied_item_is_consolidated_as_disputed() -> None:
    items = [item("i1", ("x", "a", "human"), ("y", "b", "human"))]
    [(_, record)] = consolidated_records(items, "majority", whole_campaign=False)
    assert record["disputed"] is True and record["confidence"] == 0.5


def test_an_item_line_from_postgres_parses_into_its_labels() -> None:
    line = b'["i1", null, [["x", "{\\"preferred\\": \\"a\\"}", "human"]]]\n'
    parsed = parse_item_line(line)
    assert parsed == ItemLabels("i1", None, [("x", {"preferred": "a"}, "human")])
    assert parsed.keys == ['{"preferred":"a"}']


def test_origin_is_human_machine_or_mixed() -> None:
    assert origin_of(["human", "human"]) == "human"
    assert origin_of(["machine"]) == "machine"
    assert origin_of(["machine", "human"]) == "mixed"


def test_a_pair_is_made_only_for_a_preference_that_names_a_response() -> None:
    pair = rlhf_pair("i1", PAYLOAD, "a", agreement=1.0, confidence=0.9, votes={"a": 2})
    assert pair is not None
    assert (pair["chosen"], pair["rejected"], pair["confidence"]) == ("good", "bad", 0.9)
    assert rlhf_pair("i1", PAYLOAD, "tie", agreement=1.0, confidence=1.0, votes={}) is None


def test_lines_are_written_whole_and_counted() -> None:
    import io

    out = io.BytesIO()
    assert write_lines((b"%d\n" % n for n in range(3)), out) == 3
    assert out.getvalue() == b"0\n1\n2\n"


def test_read_ahead_keeps_order_and_raises_the_readers_failure() -> None:
    lines = [b"%d\n" % n for n in range(5000)]
    assert list(read_ahead(iter(lines), depth=2)) == lines

    def failing() -> Iterator[bytes]:
        yield b"one\n"
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError, match="the database went away"):
        list(read_ahead(failing()))


def test_read_ahead_stops_its_reader_when_the_writer_stops_early() -> None:
    closed = []

    def endless() -> Iterator[bytes]:
        try:
            while True:
                yield b"x\n"
        finally:
            closed.append(True)

    ahead = read_ahead(endless(), depth=1)
    assert next(ahead) == b"x\n"
    ahead.close()
    assert closed == [True]


def test_progress_bar_is_clamped_and_proportional() -> None:
    assert progress_bar(0.5, width=10) == "█████░░░░░"
    assert progress_bar(2.0, width=4) == "████"
    assert progress_bar(-1, width=4) == "░░░░"


def test_status_row_shows_phase_ready_labels_and_eta() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    obj = {
        "metadata": {"namespace": "human-data", "name": "q4"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "progress": {
                "labels": 450,
                "labelsTarget": 900,
                "labelsPerHour": 1200.4,
                "eta": "2026-01-01T00:22:30Z",
            },
        },
    }
    row = campaign_row(obj, now)
    assert row[:4] == ["human-data", "q4", "Running", "True"]
    assert row[4].endswith(" 50.0%")
    assert row[5:] == ["450/900", "1200/h", "22m30s"]
    table = render_table([row])
    assert table.splitlines()[0].startswith("NAMESPACE")


def test_a_new_campaign_without_status_is_pending() -> None:
    row = campaign_row({"metadata": {"namespace": "n", "name": "c"}}, dt.datetime.now(dt.UTC))
    assert row[2:4] == ["Pending", "Unknown"]
    assert row[5] == "0/0"
