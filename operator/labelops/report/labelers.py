"""`labelops labelers NAME`: each labeler's work and quality, as the campaign owner reads it.

One row per labeler of the campaign: the labels that count (human, not gold answers), the
labels excluded since a block, gold answers and accuracy with its Wilson 95% interval (the
interval the block rule reads, labelops.quality.gold), agreement with the consensus of the
items they labeled (maintained by the worker's quality job), skips (tasks released, from
the skips table release_task writes), and whether they are
blocked and why, with the same precedence as the worker's 403 (labeler_block_reason):
spec.labelers.unblocked pardons, spec.labelers.blocked bans, then the quality job's block.

The figures come from the campaign's own schema, found the way `labelops export` finds it
(status.schema and the database Secret). Reading is one aggregate over the labels by
labeler; formatting (table or JSON) is pure and separate.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TextIO

import psycopg
from psycopg import sql

from labelops.quality.intervals import wilson
from labelops.report.status_report import render_table

FORMATS = ("table", "json")
CONFIDENCE = 0.95


@dataclass(frozen=True)
class LabelerRecord:
    """What the schema holds about one labeler (zeros where it holds nothing yet)."""

    labeler: str
    labels: int  # counted, human, not gold answers
    excluded: int  # human, not gold, excluded when the labeler was blocked
    gold_answers: int
    gold_correct: int
    agreements: int
    agreement_total: int
    skips: int  # tasks released (the skips table: claim_task never offers them again)
    blocked_reason: str | None  # the quality job's block (blocked_at set), else None


@dataclass(frozen=True)
class BlockLists:
    """spec.labelers.blocked / unblocked, as the workers last wrote them (campaign_policy)."""

    blocked: frozenset[str] = frozenset()
    unblocked: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LabelerReport(LabelerRecord):
    """The record with what the owner reads from it; blocked_reason here is the reason that
    holds (block_reason: the lists' word over the quality job's)."""

    gold_accuracy: float | None
    gold_low: float | None  # Wilson 95% interval of the gold accuracy
    gold_high: float | None
    agreement: float | None  # agreements / agreement_total
    blocked: bool


# --- deciding (pure) -----------------------------------------------------------------------


def block_reason(record: LabelerRecord, lists: BlockLists) -> str | None:
    """Why the labeler may not label, with labeler_block_reason's precedence; None: they may."""
    if record.labeler in lists.unblocked:
        return None
    if record.labeler in lists.blocked:
        return "spec.labelers.blocked lists them"
    return record.blocked_reason


def report(record: LabelerRecord, lists: BlockLists) -> LabelerReport:
    gold = (
        wilson(record.gold_correct, record.gold_answers, CONFIDENCE)
        if record.gold_answers
        else None
    )
    reason = block_reason(record, lists)
    return LabelerReport(
        **{**asdict(record), "blocked_reason": reason},
        gold_accuracy=gold.point if gold else None,
        gold_low=gold.low if gold else None,
        gold_high=gold.high if gold else None,
        agreement=(record.agreements / record.agreement_total if record.agreement_total else None),
        blocked=reason is not None,
    )


# --- formatting (pure) ---------------------------------------------------------------------

HEADERS = [
    "LABELER",
    "LABELS",
    "EXCLUDED",
    "GOLD",
    "GOLD ACCURACY (WILSON 95%)",
    "AGREEMENT",
    "SKIPS",
    "BLOCKED",
]


def _accuracy_cell(row: LabelerReport) -> str:
    if row.gold_accuracy is None or row.gold_low is None or row.gold_high is None:
        return "-"
    return f"{row.gold_accuracy:.2f} [{row.gold_low:.2f}, {row.gold_high:.2f}]"


def _agreement_cell(row: LabelerReport) -> str:
    if row.agreement is None:
        return "-"
    return f"{row.agreement:.2f} ({row.agreements}/{row.agreement_total})"


def table_row(row: LabelerReport) -> list[str]:
    return [
        row.labeler,
        str(row.labels),
        str(row.excluded),
        f"{row.gold_correct}/{row.gold_answers}" if row.gold_answers else "0",
        _accuracy_cell(row),
        _agreement_cell(row),
        str(row.skips),
        f"yes: {row.blocked_reason}" if row.blocked else "no",
    ]


def render(rows: Sequence[LabelerReport], fmt: str = "table") -> str:
    """The report as a table (one line per labeler) or a JSON array of objects."""
    if fmt == "json":
        return json.dumps([_camel(asdict(row)) for row in rows], indent=2)
    if fmt != "table":
        raise ValueError(f"fmt={fmt!r}: must be one of {', '.join(FORMATS)}")
    if not rows:
        return "No labelers yet: nobody has claimed a task."
    return render_table((table_row(row) for row in rows), HEADERS)


def _camel(fields: dict[str, Any]) -> dict[str, Any]:
    def camel(key: str) -> str:
        head, *rest = key.split("_")
        return head + "".join(part.capitalize() for part in rest)

    return {camel(key): value for key, value in fields.items()}


# --- reading -------------------------------------------------------------------------------


def _records_query(schema: str) -> sql.Composed:
    return sql.SQL(
        """
        WITH human AS (
            SELECT labeler,
                   count(*) FILTER (WHERE status = 'counted') AS counted,
                   count(*) FILTER (WHERE status = 'excluded') AS excluded
            FROM {labels} WHERE origin = 'human' AND NOT gold
            GROUP BY labeler
        ), skipped AS (
            SELECT labeler, count(*) AS skips FROM {skips} GROUP BY labeler
        ), named AS (
            SELECT labeler FROM human
            UNION SELECT labeler FROM skipped
            UNION SELECT labeler FROM {quality}
            UNION SELECT unnest(blocked) FROM {policy}
        )
        SELECT n.labeler,
               coalesce(h.counted, 0), coalesce(h.excluded, 0),
               coalesce(q.gold_answers, 0), coalesce(q.gold_correct, 0),
               coalesce(q.agreements, 0), coalesce(q.agreement_total, 0),
               coalesce(s.skips, 0),
               CASE WHEN q.blocked_at IS NOT NULL THEN q.blocked_reason END
        FROM named n
        LEFT JOIN human h ON h.labeler = n.labeler
        LEFT JOIN skipped s ON s.labeler = n.labeler
        LEFT JOIN {quality} q ON q.labeler = n.labeler
        ORDER BY n.labeler
        """
    ).format(
        labels=sql.Identifier(schema, "labels"),
        skips=sql.Identifier(schema, "skips"),
        quality=sql.Identifier(schema, "labeler_quality"),
        policy=sql.Identifier(schema, "campaign_policy"),
    )


def read_records(conn: psycopg.Connection[Any], schema: str) -> list[LabelerRecord]:
    rows = conn.execute(_records_query(schema)).fetchall()
    return [
        LabelerRecord(
            labeler=row[0],
            labels=int(row[1]),
            excluded=int(row[2]),
            gold_answers=int(row[3]),
            gold_correct=int(row[4]),
            agreements=int(row[5]),
            agreement_total=int(row[6]),
            skips=int(row[7]),
            blocked_reason=row[8],
        )
        for row in rows
    ]


def read_lists(conn: psycopg.Connection[Any], schema: str) -> BlockLists:
    row = conn.execute(
        sql.SQL("SELECT blocked, unblocked FROM {}").format(
            sql.Identifier(schema, "campaign_policy")
        )
    ).fetchone()
    if row is None:
        return BlockLists()
    return BlockLists(frozenset(row[0] or ()), frozenset(row[1] or ()))


def read_reports(conn: psycopg.Connection[Any], schema: str) -> list[LabelerReport]:
    """Every labeler of the campaign in `schema`, by labeler id."""
    return reports_of(read_records(conn, schema), read_lists(conn, schema))


def reports_of(records: Iterable[LabelerRecord], lists: BlockLists) -> list[LabelerReport]:
    return [report(record, lists) for record in records]


# --- the command ---------------------------------------------------------------------------


def labelers(name: str, namespace: str | None, fmt: str, out: TextIO = sys.stdout) -> int:
    from kubernetes.client.exceptions import ApiException

    from labelops.report.export import _campaign_database

    if fmt not in FORMATS:
        print(f"--format {fmt!r} is not one of {', '.join(FORMATS)}", file=sys.stderr)
        return 2
    try:
        schema, dsn, _ = _campaign_database(name, namespace)
    except ApiException as err:
        if err.status == 404:
            print(f"labelingcampaign {name!r} not found: {err.reason}", file=sys.stderr)
            return 1
        raise
    with psycopg.connect(dsn) as conn:
        rows = read_reports(conn, schema)
    print(render(rows, fmt), file=out)
    return 0
