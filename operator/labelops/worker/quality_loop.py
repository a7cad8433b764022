"""The worker's quality job: every few seconds, the decisions that need more than one item.

What the labeling transactions cannot decide alone, because it spans labelers, items or
model versions, runs here (one replica at a time, under a session-level advisory lock):

1. labelers: spec.labelers.blocked / unblocked applied (a labeler the blocked list no
   longer names is unblocked, unless the gold rule blocked them); a labeler whose gold answers put
   the Wilson upper bound of their accuracy below quality.gold.minAccuracy (after
   minAnswers) is blocked (labelops.quality.gold); agreement with consensus of the items
   people completed is counted (it weighs votes in the adaptive-overlap posterior);
2. a block's consequences: the labeler's labels on open items excluded, those items reopen;
3. models: each version with new audits is calibrated (labelops.quality.version_trust): a
   proven threshold turns auto-accept on, a failing rolling window brakes it; a braked
   version's machine labels given since its last passing window are withdrawn (checked at
   every run, so a label an ingest transaction gave while the brake was applied is too);
4. pending items a trusted version's threshold now covers are auto-accepted;
5. every SUMMARY_SECONDS, Krippendorff's alpha of the human answers and the gold totals
   into quality_summary, which the operator reads in O(1).

A failure is logged and retried at the next run; labeling goes on without it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from psycopg_pool import ConnectionPool

from labelops.quality.agreement import krippendorff_alpha
from labelops.quality.gold import gold_verdict
from labelops.quality.version_trust import calibrate_version
from labelops.store.autocommit import autocommit
from labelops.store.policy import CampaignPolicy
from labelops.store.quality_sweeps import QualitySummary, QualitySweeps

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 2.0
SUMMARY_SECONDS = 15.0
AUTO_ACCEPT_CHUNK = 500
# A block of spec.labelers.blocked: lifted when the list no longer names the labeler.
SPEC_BLOCK_REASON = "spec.labelers.blocked lists this labeler"
_LOCK_NAMESPACE = 0x4C51  # "LQ", keyed by the schema


@dataclass
class RunReport:
    ran: bool = False
    blocked: list[str] = field(default_factory=list)
    excluded: int = 0
    calibrated: list[str] = field(default_factory=list)
    braked: list[str] = field(default_factory=list)
    withdrawn: int = 0
    auto_accepted: int = 0
    summarised: bool = False


class QualityJob:
    def __init__(
        self,
        pool: ConnectionPool,
        schema: str,
        policy: CampaignPolicy,
        rating_scale: tuple[int, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._policy = policy
        self._sweeps = QualitySweeps(schema)
        self._rating = rating_scale is not None
        self._clock = clock
        self._last_summary = -SUMMARY_SECONDS

    def run_once(self, force_summary: bool = False) -> RunReport:
        report = RunReport()
        # Each step's transaction its own (see store.autocommit), whatever the pool's default.
        with self._pool.connection() as conn, autocommit(conn):
            got = conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK_NAMESPACE, self._schema)
            ).fetchone()
            if not (got and got[0]):
                return report
            try:
                report.ran = True
                self._labelers(conn, report)
                self._exclusions(conn, report)
                if self._policy.num_classes is not None:
                    self._models(conn, report)
                now = self._clock()
                if force_summary or now - self._last_summary >= SUMMARY_SECONDS:
                    self._summary(conn)
                    self._last_summary = now
                    report.summarised = True
            finally:
                conn.execute(
                    "SELECT pg_advisory_unlock(%s, hashtext(%s))", (_LOCK_NAMESPACE, self._schema)
                )
        return report

    def _labelers(self, conn: Any, report: RunReport) -> None:
        policy, sweeps = self._policy, self._sweeps
        with conn.transaction():
            # Every labeler's quality row first, in labeler order, as the labeling batches
            # take theirs (lock_labeler_days): the statements below then wait for nothing
            # that a batch could hold while waiting for this transaction.
            sweeps.lock_labelers(conn)
            listed = [labeler for labeler in policy.blocked if labeler not in policy.unblocked]
            blocks = [(labeler, SPEC_BLOCK_REASON) for labeler in listed]
            if policy.gold_min_accuracy > 0:
                for labeler, correct, total in sweeps.gold_records(conn, policy.gold_min_answers):
                    if labeler in policy.unblocked:
                        continue
                    verdict = gold_verdict(
                        correct, total, policy.gold_min_answers, policy.gold_min_accuracy
                    )
                    if verdict.blocked:
                        blocks.append((labeler, f"quality.gold: {verdict.reason}"))
            report.blocked = sweeps.block(conn, blocks)
            sweeps.unblock(conn, policy.unblocked)
            sweeps.unblock_unlisted(conn, SPEC_BLOCK_REASON, listed)
            sweeps.refresh_agreement(conn)
        for labeler in report.blocked:
            log.warning("blocked labeler %s", labeler)

    def _exclusions(self, conn: Any, report: RunReport) -> None:
        for labeler in self._sweeps.pending_exclusions(conn):
            with conn.transaction():
                report.excluded += self._sweeps.exclude(conn, labeler)

    def _models(self, conn: Any, report: RunReport) -> None:
        policy, sweeps = self._policy, self._sweeps
        if policy.auto_accept:
            for version, _, _, _, braked, _ in sweeps.versions_with_new_audits(conn):
                with conn.transaction():
                    calibration = calibrate_version(
                        sweeps.audits_of(conn, version),
                        policy.target_accuracy,
                        policy.confidence_level,
                        policy.brake_window,
                        already_braked=bool(braked),
                        machine_floor=sweeps.machine_floor(conn, version),
                    )
                    sweeps.record_calibration(conn, version, calibration)
                    report.calibrated.append(version)
                    if calibration.braked and not braked:
                        report.braked.append(version)
                        log.warning("model %s braked: %s", version, calibration.message)
            # The brake's withdrawal, in a transaction of its own per version (the version
            # is braked already, so auto-accept gives it no new label meanwhile).
            for version, last_passing in sweeps.braked_with_labels(conn):
                with conn.transaction():
                    report.withdrawn += sweeps.withdraw(conn, version, last_passing)
            for version in sweeps.trusted_versions(conn):
                while True:
                    with conn.transaction():
                        n = sweeps.auto_accept_pending(conn, version, AUTO_ACCEPT_CHUNK)
                    report.auto_accepted += n
                    if n < AUTO_ACCEPT_CHUNK:
                        break

    def _summary(self, conn: Any) -> None:
        with conn.transaction():
            answers = [
                (item, labeler, _hashable(answer))
                for item, labeler, answer in self._sweeps.human_answers(conn)
            ]
            level: Literal["nominal", "ordinal"] = "ordinal" if self._rating else "nominal"
            agreement = krippendorff_alpha(answers, level=level) if answers else None
            self._sweeps.write_summary(
                conn,
                QualitySummary(agreement.alpha if agreement else None, level),
            )


def _hashable(value: Any) -> Any:
    """Answers are JSON scalars (a choice, a response id, a score)."""
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


class QualityLoop:
    """Runs the job every INTERVAL_SECONDS until stopped (a BackgroundTask's loop, like
    ingest's and the relay's); never dies of a failed run."""

    def __init__(self, job: QualityJob, interval: float = INTERVAL_SECONDS) -> None:
        self._job = job
        self._interval = interval

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            try:
                self._job.run_once()
            except Exception as err:  # a database outage, say: retried at the next run
                log.warning("quality job failed (retrying): %s: %s", type(err).__name__, err)
