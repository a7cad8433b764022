"""LabelStore: what the worker's HTTP API does to a campaign's labels, and the rules it keeps.

    store = LabelStore(pool, config)   # pool: psycopg_pool.ConnectionPool on the campaign DB
    store.claim(labeler)     -> ClaimedTask | None
    store.submit(labeler, item_id, value, idempotency_key=None, origin=LabelOrigin.HUMAN)
                             -> SubmitResult
    store.submit_and_claim(labeler, item_id, value, idempotency_key=None)
                             -> (SubmitResult, ClaimedTask | QuotaExceeded | None)
    store.release(labeler, item_id) -> bool
    store.me(labeler)        -> LabelerStats
    store.progress()         -> ProgressCounts
    store.active_leases()    -> ActiveLeases (campaign-wide, labelops.store.active_leases)
    store.ping()             -> None (raises psycopg.Error when the database is unreachable)

claim, submit and release each run as one statement (a function of the campaign's schema,
migrations/0002_claim_and_submit.sql, 0003_accept_label.sql) in its own transaction: one
round trip, and no row lock is ever held while this process waits. A submission whose item
this process did not lease to the labeler (labelops.store.leased_payloads) reads the item first.
Refusals are exceptions from labelops.store.errors, each with a `reason` and a human
`message`: NotFound (404), Conflict / LeaseRequired (409), InvalidLabel (422, `violations`
name JSON pointers), QuotaExceeded (429, `retry_after` in seconds).

claim(labeler)
  - The first claim of a LabelStore reopens items completed under a smaller labelsPerItem
    (sync_labels_per_item; the CRD lets labelsPerItem only grow).
  - None when the campaign is paused (config.paused), when target.items items are complete
    (the progress counters, read at most every TARGET_READ_SECONDS, so a few leases taken
    just before may still overshoot), or no task is available for this labeler. Submissions
    of tasks already leased are still accepted while paused or complete.
  - Never an item the labeler labeled, holds a lease on, or released (skipped).
  - Never more live leases + accepted labels on an item than target.labelsPerItem.
  - Highest priority first, then oldest (ingest order).
  - A lease lasts quotas.leaseSeconds; an expired lease gives its slot back to the pool
    (reaped by later claims). A labeler may claim again an item whose lease lapsed.
  - A labeler may hold several leases, at most quotas.maxLeasesPerLabeler live ones:
    beyond, QuotaExceeded("max_leases_per_labeler", retry_after = until their earliest
    lease expires).
  - perLabelerDaily: QuotaExceeded("per_labeler_daily", retry_after = until 00:00 UTC)
    when today's labels reached it; also (retry_after = earliest lease expiry) when today's
    labels + held leases reached it, so nobody holds a task they could not submit today.

submit(labeler, item_id, value, idempotency_key=None, origin=HUMAN)
  Checked in this order:
  1. Unknown item: NotFound.
  2. Idempotency-Key (per labeler) seen before: the same item and value -> the original
     result (same label_id, created_at; replayed=True), whatever happened since; a
     different item or value -> Conflict("idempotency_key_reused"). Only accepted labels
     are remembered: a retry of a refused submission is evaluated afresh.
  3. Value validated (task type, campaign labelSchema, item-specific rules, no NUL
     characters, nesting at most 64 deep): InvalidLabel. The refusal is counted in the
     `rejected` counter; the lease is kept.
  Then, under a row lock on the item:
  4. Labeler already labeled the item: Conflict("already_labeled").
  5. Item has its labelsPerItem labels: Conflict("item_full").
  6. Leases: a live lease (or one that expired but was not yet reaped, so its slot is still
     reserved) is consumed by the label. A lapsed lease whose slot went back to the pool
     is still accepted when the item has a slot nobody else holds (labels + live leases <
     labelsPerItem), else Conflict("lease_expired"). No lease at all (never claimed, or
     released): LeaseRequired (409, reason "lease_required").
  7. perLabelerDaily reached: QuotaExceeded("per_labeler_daily", until 00:00 UTC).
  8. Accepted, all in one transaction: the label (unique per item and labeler, ordinal
     1..N unique per item), its outbox row, the item's counts (completed at N), the
     labeler's daily count, the lease removed, the progress counters.
  Exactly N: the item row lock serialises submissions to one item, and the database
  refuses a second label per (item, labeler) and a second label per (item, ordinal).
  `origin` says whether the label counts as humanLabeled or machineLabeled.
  created_at is the database's clock when the submission arrived.

release(labeler, item_id) -> bool
  Returns the lease's slot to the pool and records the skip (claim will not offer the
  item to this labeler again). False when the labeler held no lease on it; NotFound for
  an unknown item.

me(labeler): labels today and in total, daily quota and what is left, live leases.
progress(): the campaign counters, O(1) (labelops.store.progress).

Locks, and why they cannot form a cycle: claim locks the labeler's labeler_days row first,
then locks items only with SKIP LOCKED (it never waits on an item). submit and release lock
the item first, then (submit) the labeler's labeler_days row, then one progress shard as
the last write; ingest locks items in id order, then one shard. Lease rows are only touched
while their item is locked. Deadlocks, serialisation failures and lost races on the labels'
unique constraints are retried anyway (ATTEMPTS times), as a safety net.

Where the waiting happens (StoreIO): by default every call runs on the calling thread. The
worker's HTTP server, which runs many requests on one event loop, passes an io whose
blocking() runs database work on a thread pool and whose accept() hands submissions to its
group-commit batcher (labelops.store.batching), so that a request waiting for the database
lets the loop serve the others; the rules above are the same either way.

The pool's connections are switched to autocommit while the store uses them and handed
back as they were (the worker's pool opens them in autocommit, so nothing is switched).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from labelops.api.tasktypes import LabelValidator
from labelops.api.worker_configmap import WorkerConfig
from labelops.store.active_leases import ActiveLeases, read_active_leases
from labelops.store.autocommit import autocommit
from labelops.store.claims import claim_next, next_utc_midnight, release_item
from labelops.store.errors import InvalidLabel, QuotaExceeded, StoreError
from labelops.store.leased_payloads import LeasedPayloads
from labelops.store.lost_races import ATTEMPTS, lost_race
from labelops.store.policy import CampaignPolicy, write_policy
from labelops.store.progress import CounterDelta, ProgressCounts, bump_params, read_progress
from labelops.store.queries import Queries
from labelops.store.results import ClaimedTask, LabelerStats, LabelOrigin, SubmitResult
from labelops.store.submissions import (
    Submission,
    Submitted,
    accept_one,
    label_violations,
    submit_label,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# How stale the "target.items items are complete" answer of claims may be.
TARGET_READ_SECONDS = 1.0


class Unbatched(Enum):
    """StoreIO's answer when it leaves a request to the store itself."""

    UNBATCHED = "unbatched"


UNBATCHED = Unbatched.UNBATCHED


class StoreIO(Protocol):
    def blocking(self, work: Callable[[], T]) -> T:
        """Run work (which uses the store's pool) and return what it returns."""
        ...

    def accept(self, submission: Submission) -> Submitted | Unbatched:
        """Submit a label whose value was validated: its Submitted, its refusal raised, or
        UNBATCHED to have the store run it itself (accept_one, through blocking())."""
        ...

    def claim(self, labeler: str) -> tuple[ClaimedTask, int] | Unbatched | None:
        """Lease the labeler's next task, as claim_next does, or UNBATCHED."""
        ...


class DirectIO:
    """Everything on the calling thread."""

    def blocking(self, work: Callable[[], T]) -> T:
        return work()

    def accept(self, submission: Submission) -> Submitted | Unbatched:
        return UNBATCHED

    def claim(self, labeler: str) -> tuple[ClaimedTask, int] | Unbatched | None:
        return UNBATCHED


class LabelStore:
    def __init__(
        self, pool: ConnectionPool[Any], config: WorkerConfig, io: StoreIO | None = None
    ) -> None:
        self._pool = pool
        self._config = config
        self._io: StoreIO = io or DirectIO()
        self._queries = Queries(config.schema_)
        self._validator = LabelValidator(config.task)
        self._leased = LeasedPayloads()
        self._synced = threading.Event()
        self._sync_lock = threading.Lock()
        self._target_read_at = -TARGET_READ_SECONDS
        self._target_reached = False

    @property
    def config(self) -> WorkerConfig:
        return self._config

    def claim(self, labeler: str) -> ClaimedTask | None:
        if self._config.paused or self.target_reached():
            return None

        if not self._synced.is_set():
            self._io.blocking(self._sync_once)
        leased = self._io.claim(labeler)
        if leased is UNBATCHED:
            leased = self._io.blocking(
                lambda: self._transact(
                    lambda conn: claim_next(conn, self._queries, self._config, labeler)
                )
            )
        return self._remembered(labeler, leased)

    def submit(
        self,
        labeler: str,
        item_id: str,
        value: Any,
        idempotency_key: str | None = None,
        *,
        origin: LabelOrigin = LabelOrigin.HUMAN,
    ) -> SubmitResult:
        submission = Submission(labeler, item_id, value, idempotency_key, origin)
        return self._submit(submission).result

    def submit_and_claim(
        self, labeler: str, item_id: str, value: Any, idempotency_key: str | None = None
    ) -> tuple[SubmitResult, ClaimedTask | QuotaExceeded | None]:
        """submit, then the labeler's next task as claim() leases it, in the same
        transaction: the task, None when there is none (or the campaign is paused), or the
        QuotaExceeded that claim() would raise. A refused submission raises as submit()
        does, and leases nothing."""
        lease_next = not self._config.paused and not self.target_reached()
        if lease_next and not self._synced.is_set():
            self._io.blocking(self._sync_once)
        submitted = self._submit(
            Submission(labeler, item_id, value, idempotency_key, LabelOrigin.HUMAN, lease_next)
        )
        if not lease_next:
            return submitted.result, None
        if not submitted.claimed:  # a replay answered before the database was asked
            try:
                return submitted.result, self.claim(labeler)
            except QuotaExceeded as refused:
                return submitted.result, refused
        if isinstance(submitted.next_lease, QuotaExceeded):
            return submitted.result, submitted.next_lease
        return submitted.result, self._remembered(labeler, submitted.next_lease)

    def recall_leased(self, pairs: Sequence[tuple[str, str]]) -> int:
        """Remember, in one read, the payloads of the leases among `pairs` (labeler, item id)
        that this process did not lease itself (another process or replica did), so that
        their submissions take the fast path and commit in one batch instead of one
        transaction each. The rule of leased_payloads.py holds: only items the labeler
        holds a lease row on. Returns how many payloads it read."""
        missing = [
            (labeler, item) for labeler, item in pairs if not self._leased.get(labeler, item)
        ]
        if not missing:
            return 0

        def read() -> list[tuple[str, str, str]]:
            with self._pool.connection() as conn:
                cursor = conn.execute(
                    self._queries.leased_payloads,
                    ([labeler for labeler, _ in missing], [item for _, item in missing]),
                )
                return cursor.fetchall()

        rows = self._io.blocking(read)
        for item_id, labeler, payload_text in rows:
            self._leased.remember(labeler, item_id, json.loads(payload_text), len(payload_text))
        return len(rows)

    def target_reached(self) -> bool:
        """target.items items are complete, from the O(1) counters read at most every
        TARGET_READ_SECONDS (concurrent callers may both read: harmless)."""
        now = time.monotonic()
        if now - self._target_read_at >= TARGET_READ_SECONDS:
            self._target_read_at = now
            completed = self.progress().items_completed
            self._target_reached = completed >= self._config.target.items
        return self._target_reached

    def _submit(self, submission: Submission) -> Submitted:
        if not self._synced.is_set():
            self._io.blocking(self._sync_once)
        labeler, item_id = submission.labeler, submission.item_id
        payload = self._leased.get(labeler, item_id)
        try:
            if payload is not None and not label_violations(
                self._validator, payload, submission.value
            ):
                # The usual case: checked against what the labeler was shown, so the
                # database call decides the rest.
                outcome: Submitted | list[Any] | Unbatched = self._io.accept(submission)
                if outcome is UNBATCHED:
                    outcome = self._io.blocking(
                        lambda: self._transact(
                            lambda conn: accept_one(conn, self._queries, self._config, submission)
                        )
                    )
            else:
                outcome = self._io.blocking(
                    lambda: self._transact(
                        lambda conn: submit_label(
                            conn, self._queries, self._config, self._validator, submission
                        )
                    )
                )
        except StoreError:
            self._leased.forget(labeler, item_id)
            raise
        if isinstance(outcome, list):
            raise InvalidLabel(outcome)  # the lease stays, and so does its payload
        self._leased.forget(labeler, item_id)
        return outcome

    def _remembered(
        self, labeler: str, claimed: tuple[ClaimedTask, int] | None
    ) -> ClaimedTask | None:
        if claimed is None:
            return None
        task, payload_chars = claimed
        self._leased.remember(labeler, task.item_id, task.payload, payload_chars)
        return task

    def _sync_once(self) -> None:
        if not self._synced.is_set():
            with self._sync_lock:
                if not self._synced.is_set():
                    self.sync_policy()
                    self.sync_labels_per_item()

    def release(self, labeler: str, item_id: str) -> bool:
        self._leased.forget(labeler, item_id)
        return self._io.blocking(
            lambda: self._transact(lambda conn: release_item(conn, self._queries, labeler, item_id))
        )

    def me(self, labeler: str) -> LabelerStats:
        quotas = self._config.quotas

        def read() -> Any:
            with self._pool.connection() as conn:
                return conn.execute(self._queries.labeler_stats, {"labeler": labeler}).fetchone()

        row = self._io.blocking(read)
        assert row is not None
        today, total, leases, now = row
        return LabelerStats(
            labeler=labeler,
            labels_today=today,
            labels_total=total,
            daily_quota=quotas.per_labeler_daily,
            daily_left=max(0, quotas.per_labeler_daily - today),
            active_leases=leases,
            max_leases=quotas.max_leases_per_labeler,
            quota_resets_at=next_utc_midnight(now),
        )

    def progress(self) -> ProgressCounts:
        def read() -> ProgressCounts:
            with self._pool.connection() as conn:
                return read_progress(conn, self._config.schema_)

        return self._io.blocking(read)

    def active_leases(self) -> ActiveLeases:
        def read() -> ActiveLeases:
            with self._pool.connection() as conn:
                return read_active_leases(conn, self._config.schema_)

        return self._io.blocking(read)

    def ping(self) -> None:
        def ping() -> None:
            with self._pool.connection() as conn:
                conn.execute(self._queries.ping).fetchone()

        self._io.blocking(ping)

    def sync_policy(self) -> CampaignPolicy:
        """Write the policy this store's config implies into the schema (campaign_policy):
        the functions read it. Idempotent; the first claim or submission runs it."""
        policy = CampaignPolicy.from_config(self._config)
        self._transact(lambda conn: write_policy(conn, self._config.schema_, policy))
        return policy

    def sync_labels_per_item(self) -> int:
        """Reopen items completed under a smaller target.labelsPerItem (the CRD only lets
        it grow); returns how many. The first claim runs it; it is idempotent, and cheap
        only in the sense of once per worker (it reads the completed items)."""

        if CampaignPolicy.from_config(self._config).adaptive:
            # Adaptive overlap decides completion per item: complete items stay complete.
            self._synced.set()
            return 0

        def reopen(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                reopened = len(
                    conn.execute(
                        self._queries.reopen_items,
                        {"labels_per_item": self._config.target.labels_per_item},
                    ).fetchall()
                )
                if reopened:
                    delta = CounterDelta(items_completed=-reopened)
                    conn.execute(self._queries.bump_progress, bump_params(delta))
            return reopened

        reopened = self._transact(reopen)
        self._synced.set()
        return reopened

    def _transact(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run work on a pooled connection in autocommit mode (each statement is its own
        transaction: claim, submit and release are one statement each), retrying lost
        races."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self._pool.connection() as conn:
                    if conn.autocommit:  # the worker's pool: nothing to switch
                        return work(conn)
                    with autocommit(conn):
                        return work(conn)
            except psycopg.Error as err:
                if attempt == ATTEMPTS or not lost_race(err):
                    raise
                log.warning("retrying after %s (attempt %d)", type(err).__name__, attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")
