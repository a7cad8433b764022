"""The demo's closing summary: who was caught, what the model did, and whether the exported
pairs follow the careful labelers.

Everything shown is read back from the campaign, never from the simulation's own
bookkeeping: the labelers' figures from `labelops labelers` (labelops.report.labelers), the
model's from status.model and the schema's model_versions table, the pairs from the RLHF
export. The simulation's truth (DemoItem.better) is used only to grade what was exported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from devstack.demo.items import DemoItem
from labelops.report.labelers import LabelerReport


@dataclass(frozen=True)
class LabelSpend:
    """Every label the campaign stored, by who gave it and whether it counts."""

    human: int  # all human labels, gold answers and excluded ones included
    human_counted: int  # human labels that count on the items being labeled
    gold_answers: int
    excluded: int
    machine: int  # machine labels that count


@dataclass(frozen=True)
class VersionFigures:
    version: str
    threshold: float | None
    audits: int
    audits_correct: int
    lower_bound: float | None
    trusted: bool
    machine_labels: int


def label_spend(conn: psycopg.Connection[Any], schema: str) -> LabelSpend:
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE origin = 'human'),"
            " count(*) FILTER (WHERE origin = 'human' AND status = 'counted' AND NOT gold),"
            " count(*) FILTER (WHERE origin = 'human' AND gold),"
            " count(*) FILTER (WHERE status = 'excluded'),"
            " count(*) FILTER (WHERE origin = 'machine' AND status = 'counted')"
            " FROM {}"
        ).format(sql.Identifier(schema, "labels"))
    ).fetchone()
    assert row is not None
    return LabelSpend(*(int(v) for v in row))


def all_labels(conn: psycopg.Connection[Any], schema: str) -> int:
    """Labels stored, each relayed to the labels topic under its own labelId."""
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "labels")))
    found = row.fetchone()
    return int(found[0]) if found else 0


def version_figures(conn: psycopg.Connection[Any], schema: str) -> list[VersionFigures]:
    """Each model version the worker saw, first seen first, with its machine labels."""
    rows = conn.execute(
        sql.SQL(
            "SELECT v.version, v.threshold, v.audits, v.audits_correct, v.lower_bound,"
            " v.trusted AND NOT v.braked,"
            " (SELECT count(*) FROM {labels} l WHERE l.origin = 'machine'"
            "   AND l.status = 'counted' AND l.model_version = v.version)"
            " FROM {versions} v ORDER BY v.first_seen_at, v.version"
        ).format(
            labels=sql.Identifier(schema, "labels"),
            versions=sql.Identifier(schema, "model_versions"),
        )
    ).fetchall()
    return [
        VersionFigures(r[0], r[1], int(r[2]), int(r[3]), r[4], bool(r[5]), int(r[6])) for r in rows
    ]


def caught_lines(reports: list[LabelerReport], careless: set[str]) -> list[str]:
    """One line per blocked labeler: who, the rule, the figures (from `labelops labelers`)."""
    lines = []
    for row in reports:
        if not row.blocked:
            continue
        kind = "careless" if row.labeler in careless else "careful (!)"
        gold = (
            f"{row.gold_correct}/{row.gold_answers} gold pairs right "
            f"({row.gold_accuracy:.2f}, Wilson 95% [{row.gold_low:.2f}, {row.gold_high:.2f}])"
            if row.gold_answers and row.gold_accuracy is not None
            else "no gold answers"
        )
        lines.append(
            f"{row.labeler} ({kind}) blocked: {gold}; {row.excluded} of their labels on "
            f"items not yet complete excluded and those items reopened. Rule: "
            f"{row.blocked_reason}"
        )
    return lines


def model_lines(
    status_model: Mapping[str, Any] | None,
    versions: list[VersionFigures],
    spend: LabelSpend,
    items: int,
    labels_per_item_before: int,
) -> list[str]:
    lines = [
        f"human labels spent: {spend.human} ({spend.human_counted} on the {items} items, "
        f"{spend.gold_answers} gold answers, {spend.excluded} excluded from blocked labelers);"
        f" without the model and adaptive overlap: {items} x {labels_per_item_before} = "
        f"{items * labels_per_item_before}",
        f"items the model labeled: {spend.machine} of {items} ({100 * spend.machine / items:.0f}%)",
    ]
    for v in versions:
        accuracy = f"{v.audits_correct}/{v.audits} audits right" if v.audits else "no audits yet"
        bound = f", lower bound {v.lower_bound:.3f}" if v.lower_bound is not None else ""
        threshold = (
            f"threshold {v.threshold:.3f}" if v.threshold is not None else "no threshold proven"
        )
        lines.append(
            f"  {v.version}: {accuracy}{bound}, {threshold}, "
            f"{'trusted' if v.trusted else 'not trusted'}, {v.machine_labels} machine labels"
        )
    if status_model:
        lines.append(
            "  status.model (as the operator last wrote it): version {version}, audits "
            "{audits}, accuracy {acc}, lower bound {low}, threshold {thr}, trusted {trusted}, "
            "autoAccepted {auto}, routedToPeople {people}".format(
                version=status_model.get("version"),
                audits=status_model.get("audits"),
                acc=status_model.get("auditAccuracy"),
                low=status_model.get("auditLowerBound"),
                thr=status_model.get("threshold"),
                trusted=status_model.get("trusted"),
                auto=status_model.get("autoAccepted"),
                people=status_model.get("routedToPeople"),
            )
        )
    return lines


@dataclass(frozen=True)
class PairsGrade:
    pairs: int
    careful: int  # pairs whose chosen response is the one a careful labeler prefers
    first: dict[str, Any] | None
    first_careful: bool


def grade_pairs(path: Path, by_id: Mapping[str, DemoItem]) -> PairsGrade:
    pairs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    right = [pair["chosen_id"] == by_id[pair["id"]].better for pair in pairs]
    return PairsGrade(
        pairs=len(pairs),
        careful=sum(right),
        first=pairs[0] if pairs else None,
        first_careful=bool(right and right[0]),
    )
