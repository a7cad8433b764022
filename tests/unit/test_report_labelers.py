"""`labelops labelers`: the block precedence, the figures and both formats, without a database."""

from __future__ import annotations

import json

import pytest

from labelops.cli import parser
from labelops.report.labelers import (
    BlockLists,
    LabelerRecord,
    block_reason,
    render,
    report,
    reports_of,
)


def record(labeler: str = "ann", **fields: object) -> LabelerRecord:
    values: dict[str, object] = {
        "labels": 0,
        "excluded": 0,
        "gold_answers": 0,
        "gold_correct": 0,
        "agreements": 0,
        "agreement_total": 0,
        "skips": 0,
        "blocked_reason": None,
        **fields,
    }
    return LabelerRecord(labeler=labeler, **values)  # type: ignore[arg-type]


QUALITY_BLOCK = (
    "blocked: 2 of 9 gold answers correct, Wilson 0.95 upper bound 0.547 < gold.minAccuracy 0.7"
)


def test_gold_accuracy_carries_the_wilson_95_interval_of_newcombe_1998() -> None:
    # Newcombe (1998), Table II, method 3: 15 of 148 -> [0.0624, 0.1605].
    row = report(record(gold_answers=148, gold_correct=15), BlockLists())
    assert row.gold_accuracy == 15 / 148
    assert (round(row.gold_low or 0, 4), round(row.gold_high or 0, 4)) == (0.0624, 0.1605)


def test_no_gold_answers_means_no_accuracy_rather_than_zero() -> None:
    row = report(record(labels=4), BlockLists())
    assert (row.gold_accuracy, row.gold_low, row.gold_high) == (None, None, None)
    assert row.agreement is None


def test_agreement_is_agreements_over_the_labels_compared_with_consensus() -> None:
    row = report(record(agreements=45, agreement_total=50), BlockLists())
    assert row.agreement == 0.9


def test_unblocked_pardons_before_blocked_bans_before_the_quality_job() -> None:
    blocked_by_job = record("ann", blocked_reason=QUALITY_BLOCK)
    assert block_reason(blocked_by_job, BlockLists()) == QUALITY_BLOCK
    assert block_reason(blocked_by_job, BlockLists(unblocked=frozenset({"ann"}))) is None
    assert (
        block_reason(blocked_by_job, BlockLists(blocked=frozenset({"ann"})))
        == "spec.labelers.blocked lists them"
    )
    both = BlockLists(blocked=frozenset({"ann"}), unblocked=frozenset({"ann"}))
    assert block_reason(record("ann"), both) is None
    assert block_reason(record("bob"), BlockLists(blocked=frozenset({"ann"}))) is None


def test_table_has_one_line_per_labeler_with_the_figures() -> None:
    rows = reports_of(
        [
            record(
                "alice",
                labels=120,
                gold_answers=10,
                gold_correct=9,
                agreements=110,
                agreement_total=118,
                skips=2,
            ),
            record(
                "grace",
                labels=3,
                excluded=14,
                gold_answers=9,
                gold_correct=2,
                agreements=7,
                agreement_total=15,
                blocked_reason=QUALITY_BLOCK,
            ),
            record("zed"),
        ],
        BlockLists(),
    )
    lines = render(rows).splitlines()
    assert lines[0].split() == [
        "LABELER",
        "LABELS",
        "EXCLUDED",
        "GOLD",
        "GOLD",
        "ACCURACY",
        "(WILSON",
        "95%)",
        "AGREEMENT",
        "SKIPS",
        "BLOCKED",
    ]
    assert len(lines) == 4
    # 9 of 10: Wilson 95% [0.596, 0.982]; 2 of 9: [0.063, 0.547].
    assert lines[1].split() == [
        "alice", "120", "0", "9/10", "0.90", "[0.60,", "0.98]", "0.93", "(110/118)", "2", "no",
    ]  # fmt: skip
    assert lines[2].split()[:9] == [
        "grace", "3", "14", "2/9", "0.22", "[0.06,", "0.55]", "0.47", "(7/15)",
    ]  # fmt: skip
    assert lines[2].endswith(f"yes: {QUALITY_BLOCK}")
    assert lines[3].split() == ["zed", "0", "0", "0", "-", "-", "0", "no"]
    # Columns line up: every row's BLOCKED cell starts where the header's does.
    at = lines[0].index("BLOCKED")
    assert lines[1][at:].startswith("no") and lines[2][at:].startswith("yes")


def test_json_is_an_array_of_camel_case_objects_with_every_figure() -> None:
    rows = reports_of(
        [record("grace", labels=3, gold_answers=9, gold_correct=2, blocked_reason=QUALITY_BLOCK)],
        BlockLists(),
    )
    [obj] = json.loads(render(rows, "json"))
    assert obj["labeler"] == "grace"
    assert obj["goldAnswers"] == 9 and obj["goldCorrect"] == 2
    assert obj["goldAccuracy"] == pytest.approx(2 / 9)
    assert obj["goldLow"] == pytest.approx(0.0632, abs=1e-4)
    assert obj["goldHigh"] == pytest.approx(0.5474, abs=1e-4)
    assert obj["blocked"] is True and obj["blockedReason"] == QUALITY_BLOCK
    assert obj["agreement"] is None
    assert set(obj) == {
        "labeler", "labels", "excluded", "goldAnswers", "goldCorrect", "goldAccuracy",
        "goldLow", "goldHigh", "agreements", "agreementTotal", "agreement", "skips",
        "blocked", "blockedReason",
    }  # fmt: skip


def test_an_empty_campaign_says_so_and_json_is_an_empty_array() -> None:
    assert render([]) == "No labelers yet: nobody has claimed a task."
    assert json.loads(render([], "json")) == []


def test_an_unknown_format_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="fmt='csv': must be one of table, json"):
        render([], "csv")


def test_the_cli_takes_a_name_a_namespace_and_a_format() -> None:
    args = parser().parse_args(
        ["labelers", "helpfulness-q4", "-n", "human-data", "--format", "json"]
    )
    assert (args.name, args.namespace, args.format) == ("helpfulness-q4", "human-data", "json")
    assert parser().parse_args(["labelers", "x"]).format == "table"
    with pytest.raises(SystemExit):
        parser().parse_args(["labelers", "x", "--format", "csv"])
