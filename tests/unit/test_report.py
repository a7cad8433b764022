"""What `labelops status` and `labelops export` show, from plain data."""

import datetime as dt
import json

from labelops.report.export import LabelRow, RlhfTally, rlhf_lines, rlhf_record
from labelops.report.status import campaign_row, progress_bar, render_table

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
