"""The statements of the worker's quality job: calibration, labeler quality, summaries.

The decisions (thresholds, the brake, blocks, alpha) are pure code in labelops.quality; this
module only reads what they need and writes what they decided, each step in a transaction
of its own, so a step never holds a lock while another is computed. The labeling
transactions (claim, submit) touch labeler_quality rows after the labelers' rows of the day,
and a batch of them takes all its labelers' quality rows at once, in labeler order
(lock_labeler_days); every step below locks items (in id order) or labeler_quality rows (all
of them first, in labeler order), never both in one transaction, and a progress shard last.

One runner at a time per campaign (replicas take turns through a transaction-level advisory
lock keyed by the schema), so two workers never decide the same block twice.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from string import Formatter
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from labelops.quality.version_trust import TimedAudit, VersionCalibration
from labelops.store.progress import PROGRESS_SHARDS

# Items completed less than this long ago are left to the next run: a transaction that
# began earlier may still commit a completion stamped before the watermark.
SETTLE_SECONDS = 5.0
_LOCK_NAMESPACE = 0x4C51  # "LQ": the quality job's advisory lock, keyed by the schema


def _shard() -> int:
    return random.randrange(PROGRESS_SHARDS)


class QualitySweeps:
    def __init__(self, schema: str) -> None:
        self.schema = schema

    def _execute(
        self, conn: psycopg.Connection[Any], template: LiteralString, params: Any = None
    ) -> psycopg.Cursor[Any]:
        """Run `template`, each {name} in it the schema's table or function of that name."""
        names = {name for _, name, _, _ in Formatter().parse(template) if name}
        statement = sql.SQL(template).format(
            **{name: sql.Identifier(self.schema, name) for name in names}
        )
        return conn.execute(statement, params)

    def _column(self, conn: psycopg.Connection[Any], template: LiteralString) -> list[Any]:
        """The first column of the rows of `template` (see _execute)."""
        return [row[0] for row in self._execute(conn, template).fetchall()]

    def take_turn(self, conn: psycopg.Connection[Any]) -> bool:
        """In a transaction: whether this worker runs the job now (another replica may)."""
        row = conn.execute(
            "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_NAMESPACE, self.schema)
        ).fetchone()
        return bool(row and row[0])

    # --- labelers ---------------------------------------------------------------------

    def lock_labelers(self, conn: psycopg.Connection[Any]) -> None:
        self._execute(conn, "SELECT 1 FROM {labeler_quality} ORDER BY labeler FOR UPDATE")

    def gold_records(self, conn: psycopg.Connection[Any], min_answers: int) -> list[Any]:
        """(labeler, gold_correct, gold_answers) of labelers not blocked, with enough answers."""
        return self._execute(
            conn,
            "SELECT labeler, gold_correct, gold_answers FROM {labeler_quality} "
            "WHERE blocked_at IS NULL AND gold_answers >= %s ORDER BY labeler",
            (min_answers,),
        ).fetchall()

    def block(self, conn: psycopg.Connection[Any], blocks: Iterable[tuple[str, str]]) -> list[str]:
        """Block (labeler, reason) pairs not blocked yet; returns who was newly blocked."""
        newly = []
        for labeler, reason in sorted(blocks):
            row = self._execute(
                conn,
                "INSERT INTO {labeler_quality} AS q (labeler, blocked_at, blocked_reason) "
                "VALUES (%s, now(), %s) ON CONFLICT (labeler) DO UPDATE "
                "SET blocked_at = now(), blocked_reason = EXCLUDED.blocked_reason, "
                "    exclusion_done = false "
                "WHERE q.blocked_at IS NULL RETURNING q.labeler",
                (labeler, reason),
            ).fetchone()
            if row:
                newly.append(row[0])
        return newly

    def unblock(self, conn: psycopg.Connection[Any], labelers: Iterable[str]) -> int:
        """Lift blocks (spec.labelers.unblocked); labels excluded before stay excluded."""
        names = sorted(labelers)
        if not names:
            return 0
        return self._execute(
            conn,
            "UPDATE {labeler_quality} SET blocked_at = NULL, blocked_reason = NULL "
            "WHERE labeler = ANY (%s) AND blocked_at IS NOT NULL",
            (names,),
        ).rowcount

    def unblock_unlisted(
        self, conn: psycopg.Connection[Any], reason: str, listed: Iterable[str]
    ) -> int:
        """Lift the blocks given for `reason` (spec.labelers.blocked) of labelers the list
        no longer names; a block of the gold rule stays."""
        return self._execute(
            conn,
            "UPDATE {labeler_quality} SET blocked_at = NULL, blocked_reason = NULL "
            "WHERE blocked_at IS NOT NULL AND blocked_reason = %s "
            "AND NOT (labeler = ANY (%s))",
            (reason, sorted(listed)),
        ).rowcount

    def pending_exclusions(self, conn: psycopg.Connection[Any]) -> list[str]:
        """Blocked labelers whose labels are not excluded yet (exclude() does it, one each)."""
        return self._column(
            conn,
            "SELECT labeler FROM {labeler_quality} "
            "WHERE blocked_at IS NOT NULL AND NOT exclusion_done ORDER BY labeler",
        )

    def exclude(self, conn: psycopg.Connection[Any], labeler: str) -> int:
        row = self._execute(
            conn, "SELECT {exclude_labeler}(%s, %s::smallint)", (labeler, _shard())
        ).fetchone()
        return int(row[0]) if row else 0

    def refresh_agreement(self, conn: psycopg.Connection[Any]) -> int:
        """Count each human label of the items completed by people since the watermark as
        agreeing with its item's consolidated answer or not; returns the items counted."""
        watermark_row = self._execute(
            conn, "SELECT completed_watermark FROM {quality_summary} FOR UPDATE"
        ).fetchone()
        watermark = watermark_row[0] if watermark_row else None
        upto = conn.execute(
            "SELECT now() - make_interval(secs => %s)", (SETTLE_SECONDS,)
        ).fetchone()
        assert upto is not None
        row = self._execute(
            conn,
            """
                WITH done AS (
                    SELECT i.id, i.consolidated_value FROM {items} i
                    WHERE i.completed_at IS NOT NULL AND i.completed_at <= %(upto)s
                      AND (%(since)s::timestamptz IS NULL OR i.completed_at > %(since)s)
                      AND NOT i.machine_labeled AND i.gold_value IS NULL
                      AND i.consolidated_value IS NOT NULL
                ), votes AS (
                    SELECT l.labeler, count(*) AS total,
                           count(*) FILTER (
                               WHERE l.answer = d.consolidated_value -> p.answer_key) AS agreed
                    FROM done d JOIN {labels} l ON l.item_id = d.id
                    CROSS JOIN {campaign_policy} p
                    WHERE l.origin = 'human' AND l.status = 'counted'
                    GROUP BY l.labeler
                ), applied AS (
                    INSERT INTO {labeler_quality} AS q (labeler, agreements, agreement_total)
                    SELECT labeler, agreed, total FROM votes ORDER BY labeler
                    ON CONFLICT (labeler) DO UPDATE
                    SET agreements = q.agreements + EXCLUDED.agreements,
                        agreement_total = q.agreement_total + EXCLUDED.agreement_total
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM done), (SELECT count(*) FROM applied)
                """,
            {"upto": upto[0], "since": watermark},
        ).fetchone()
        self._execute(conn, "UPDATE {quality_summary} SET completed_watermark = %s", (upto[0],))
        return int(row[0]) if row else 0

    # --- models -------------------------------------------------------------------------

    def versions_with_new_audits(self, conn: psycopg.Connection[Any]) -> list[Any]:
        """(version, audits now, audits at the last calibration, trusted, braked,
        last_passing_at) of versions whose audit count moved."""
        return self._execute(
            conn,
            """
                SELECT v.version, coalesce(a.n, 0), v.audits, v.trusted, v.braked,
                       v.last_passing_at
                FROM {model_versions} v
                LEFT JOIN (SELECT version, count(*) AS n FROM {audits} GROUP BY version) a
                  ON a.version = v.version
                WHERE coalesce(a.n, 0) <> v.audits
                ORDER BY v.version
                """,
        ).fetchall()

    def audits_of(self, conn: psycopg.Connection[Any], version: str) -> list[TimedAudit]:
        """A version's audits, oldest first."""
        rows = self._execute(
            conn,
            "SELECT confidence, correct, created_at FROM {audits} WHERE version = %s "
            "ORDER BY created_at, item_id",
            (version,),
        ).fetchall()
        return [TimedAudit(float(c), bool(ok), at) for c, ok, at in rows]

    def machine_floor(self, conn: psycopg.Connection[Any], version: str) -> float | None:
        """The lowest confidence among the version's counted machine labels (None: none):
        the population of audits the brake must watch for those labels."""
        row = self._execute(
            conn,
            "SELECT min(confidence) FROM {labels} WHERE labeler = %s AND origin = 'machine' "
            "AND status = 'counted'",
            ("model:" + version,),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def record_calibration(
        self, conn: psycopg.Connection[Any], version: str, calibration: VersionCalibration
    ) -> None:
        self._execute(
            conn,
            "UPDATE {model_versions} SET threshold = %s, trusted = %s, braked = braked OR %s, "
            "audits = %s, audits_correct = %s, lower_bound = %s, "
            "last_passing_at = coalesce(%s, last_passing_at), message = %s, "
            "updated_at = now() WHERE version = %s",
            (
                calibration.threshold,
                calibration.trusted,
                calibration.braked,
                calibration.audits,
                calibration.audits_correct,
                calibration.lower_bound,
                calibration.passing_at,
                calibration.message,
                version,
            ),
        )

    def braked_with_labels(self, conn: psycopg.Connection[Any]) -> list[Any]:
        """(version, last_passing_at) of braked versions that still have counted machine
        labels given after their last passing window: the brake's withdrawal, and a label
        an ingest transaction committed while the brake was being applied (it read the
        version as trusted), caught at the next run."""
        return self._execute(
            conn,
            """
                SELECT v.version, v.last_passing_at FROM {model_versions} v
                WHERE v.braked AND EXISTS (
                    SELECT 1 FROM {labels} l
                    WHERE l.labeler = 'model:' || v.version AND l.status = 'counted'
                      AND NOT l.gold AND l.origin = 'machine'
                      AND (v.last_passing_at IS NULL OR l.created_at > v.last_passing_at))
                ORDER BY v.version
                """,
        ).fetchall()

    def trusted_versions(self, conn: psycopg.Connection[Any]) -> list[str]:
        return self._column(
            conn,
            "SELECT version FROM {model_versions} "
            "WHERE trusted AND NOT braked AND threshold IS NOT NULL ORDER BY version",
        )

    def auto_accept_pending(self, conn: psycopg.Connection[Any], version: str, limit: int) -> int:
        row = self._execute(
            conn, "SELECT {auto_accept}(NULL, %s, %s, %s::smallint)", (version, limit, _shard())
        ).fetchone()
        return int(row[0]) if row else 0

    def withdraw(self, conn: psycopg.Connection[Any], version: str, after: datetime | None) -> int:
        """The brake: the version's machine labels given after `after` stop counting."""
        row = self._execute(
            conn,
            "SELECT {uncount_labels}(%s, 'withdrawn', %s, %s::smallint)",
            ("model:" + version, after, _shard()),
        ).fetchone()
        return int(row[0]) if row else 0

    # --- summaries ----------------------------------------------------------------------

    def human_answers(self, conn: psycopg.Connection[Any]) -> list[Any]:
        """(item id, labeler, answer) of every counted human answer on non-gold items."""
        return self._execute(
            conn,
            "SELECT item_id, labeler, answer FROM {labels} "
            "WHERE origin = 'human' AND status = 'counted' AND NOT gold AND answer IS NOT NULL",
        ).fetchall()

    def write_summary(self, conn: psycopg.Connection[Any], summary: QualitySummary) -> None:
        self._execute(
            conn,
            """
                UPDATE {quality_summary} SET alpha = %s, alpha_level = %s,
                    gold_answers = g.answers, gold_correct = g.correct,
                    labelers_blocked = g.blocked, updated_at = now()
                FROM (SELECT coalesce(sum(gold_answers), 0) AS answers,
                             coalesce(sum(gold_correct), 0) AS correct,
                             count(*) FILTER (WHERE blocked_at IS NOT NULL) AS blocked
                      FROM {labeler_quality}) g
                """,
            (summary.alpha, summary.alpha_level),
        )


@dataclass(frozen=True)
class QualitySummary:
    alpha: float | None
    alpha_level: str | None
