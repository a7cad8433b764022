"""What the operator reads about models and data quality, in O(1) per status read.

The worker's quality job maintains the figures (labelops.worker.quality_loop): one row per
model version in model_versions, one row in quality_summary, one row per labeler in
labeler_quality. The operator reads the latest version's row, the summary row, and the
labelers blocked since the last block it saw; never a label. The blocks are read from a
watermark, so each block is returned once; the filter walks labeler_quality (one row per
labeler, a few thousand at most, never the labels). An index on labeler_quality(blocked_at)
would make it O(new blocks); the table is the worker's (0002_models_and_quality.sql).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from labelops.quality.version_trust import Calibration
from labelops.store.progress import ProgressCounts, read_progress

# At most this many new blocks are read per status read; the rest come with the next reads.
MAX_BLOCKS_PER_READ = 50


@dataclass(frozen=True)
class ModelVersionRow(Calibration):
    """The calibration of one model version, as the quality job last recorded it."""

    version: str
    first_seen_at: dt.datetime


@dataclass(frozen=True)
class QualityRow:
    """Agreement and gold totals over all human labels (quality_summary)."""

    alpha: float | None
    alpha_level: str | None
    gold_answers: int
    gold_correct: int
    labelers_blocked: int


@dataclass(frozen=True)
class BlockRow:
    labeler: str
    blocked_at: dt.datetime
    reason: str


def read_latest_model(conn: psycopg.Connection[Any], schema: str) -> ModelVersionRow | None:
    """The model version seen last (by first_seen_at), None before any prediction.

    model_versions holds one row per version a model ever published: a handful, not items.
    """
    with conn.cursor(row_factory=class_row(ModelVersionRow)) as cur:
        return cur.execute(
            sql.SQL(
                "SELECT version, first_seen_at, threshold, trusted, braked, audits,"
                " audits_correct, lower_bound, message FROM {}"
                " ORDER BY first_seen_at DESC, version DESC LIMIT 1"
            ).format(sql.Identifier(schema, "model_versions"))
        ).fetchone()


def read_quality(conn: psycopg.Connection[Any], schema: str) -> QualityRow | None:
    with conn.cursor(row_factory=class_row(QualityRow)) as cur:
        return cur.execute(
            sql.SQL(
                "SELECT alpha, alpha_level, gold_answers, gold_correct, labelers_blocked FROM {}"
            ).format(sql.Identifier(schema, "quality_summary"))
        ).fetchone()


# (blocked_at, labeler) of the last block seen: blocks are read strictly after it, so two
# blocks in the same microsecond are both read, each once.
BlockMark = tuple[dt.datetime, str]


def read_blocks_since(
    conn: psycopg.Connection[Any], schema: str, since: BlockMark | None
) -> list[BlockRow]:
    """Labelers blocked after `since` (all blocks when None), oldest first."""
    condition = sql.SQL("blocked_at IS NOT NULL")
    params: list[Any] = []
    if since is not None:
        condition = sql.SQL("(blocked_at, labeler) > (%s, %s)")
        params.extend(since)
    with conn.cursor(row_factory=class_row(BlockRow)) as cur:
        return cur.execute(
            sql.SQL(
                "SELECT labeler, blocked_at, coalesce(blocked_reason, '') AS reason FROM {}"
                " WHERE {} ORDER BY blocked_at, labeler LIMIT {}"
            ).format(
                sql.Identifier(schema, "labeler_quality"),
                condition,
                sql.Literal(MAX_BLOCKS_PER_READ),
            ),
            params,
        ).fetchall()


@dataclass(frozen=True)
class CampaignReading:
    """Everything one status read of a campaign takes from its schema."""

    counts: ProgressCounts
    model: ModelVersionRow | None
    quality: QualityRow | None
    new_blocks: list[BlockRow]


def read_campaign(
    conn: psycopg.Connection[Any], schema: str, blocks_since: BlockMark | None
) -> CampaignReading:
    """Progress counters, the latest model version, the quality summary and new blocks:
    four reads of fixed-size rows (plus the new blocks)."""
    return CampaignReading(
        counts=read_progress(conn, schema),
        model=read_latest_model(conn, schema),
        quality=read_quality(conn, schema),
        new_blocks=read_blocks_since(conn, schema, blocks_since),
    )
