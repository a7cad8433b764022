"""Group commit: the labels (and the claims) that arrive while a batch is committing go
together in the next one.

    io = BatchedIO(dsn, config, writers=2)   # a pool of `writers` connections of its own
    io.open()
    store = LabelStore(pool, config, io)      # the store hands it validated labels, claims
    io.labels.submit(submission)              # Submitted, or raises its StoreError
    io.claims.submit(labeler)                 # (ClaimedTask, payload size) or None
    io.close()

submit() queues its request and blocks until its answer; a writer thread sends whatever
is queued to the schema's accept_labels or claim_tasks as one statement, so a batch costs
one round trip and one commit (one WAL flush) however many requests it holds, and each
request gets its own verdict. Nothing waits for a batch to fill: an idle writer takes a
lone request at once, and under load batches grow by themselves with what arrived during
the previous commit. A request is answered only after its batch committed, so an accepted
label is durable when its labeler hears so.

Written with `threading` alone, so the same code serves both ways the worker runs it: in
the HTTP server's gevent processes, which monkey-patch threading, each writer is a
greenlet and a waiting request a greenlet waiting on a gevent Event (psycopg 3 waits the
gevent way once select is patched); with real threads (the tests' in-process server),
they are threads.

What a submission needs checked before the database (its value against the payload its
labeler leased, labelops.store.leased) is the caller's (LabelStore); so is the slow path
of a submission without a leased payload, which is not batched.

Errors: refusals are verdicts of their own element. A batch that fails as a whole (a lost
race on an Idempotency-Key; a deadlock, which the functions' lock order rules out, but the
database is the judge) is retried request by request, each alone, so one request's error
is its own.
"""

from __future__ import annotations

import logging
import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast

import psycopg
from psycopg import errors as pgerrors
from psycopg_pool import ConnectionPool

from labelops.api.worker_configmap import WorkerConfig
from labelops.store.claims import claim_params, claimed
from labelops.store.progress import PROGRESS_SHARDS
from labelops.store.queries import Queries
from labelops.store.results import ClaimedTask
from labelops.store.submissions import Submission, Submitted, accept_params, accepted

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")
T = TypeVar("T")

# Postgres takes a batch's locks row by row; a few hundred keep a batch well under the time
# a labeler notices.
MAX_BATCH = 256
ATTEMPTS = 3
_RETRY_ON_CONSTRAINTS = frozenset(
    {"labels_idempotency_key_unique", "labels_item_labeler_unique", "labels_item_ordinal_unique"}
)
POOL_WAIT_SECONDS = 30.0

Leased = tuple[ClaimedTask, int] | None


class BatcherClosed(RuntimeError):
    """submit() after close(), or a request still queued when the batcher closed."""


class _Pending(Generic[In]):
    """A queued request and, once its batch committed, its answer."""

    __slots__ = ("answer", "done", "request")

    def __init__(self, request: In) -> None:
        self.request = request
        self.done = threading.Event()
        self.answer: Any = None  # the Out, or the exception submit() raises

    def settle(self, answer: Any) -> None:
        self.answer = answer
        self.done.set()


class Batcher(ABC, Generic[In, Out]):
    """Queues requests and commits them in batches, at most `writers` batches at once, one
    per writer thread (each takes a connection of the pool, which should hold that many,
    while its statement runs). The writers start with the first request."""

    def __init__(
        self,
        pool: ConnectionPool[Any],
        config: WorkerConfig,
        queries: Queries,
        writers: int = 1,
    ) -> None:
        self._pool = pool
        self._config = config
        self._queries = queries
        self._writers = writers
        self._queue: list[_Pending[In]] = []
        self._wake = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.batches = 0
        self.largest_batch = 0

    def submit(self, request: In) -> Out:
        (answer,) = self.submit_all([request])
        if isinstance(answer, BaseException):
            raise answer
        return cast(Out, answer)

    def submit_all(self, requests: Sequence[In]) -> list[Out | BaseException]:
        """Queue the requests together (so they share a batch when a writer is idle) and
        wait for every answer: its Out, or the exception submit() would raise."""
        queued = [_Pending(request) for request in requests]
        with self._wake:
            if self._closed:
                raise BatcherClosed(f"{type(self).__name__} is closed")
            if not self._threads:
                self._start_writers()
            self._queue.extend(queued)
            self._wake.notify(len(queued))
        for pending in queued:
            pending.done.wait()
        return [pending.answer for pending in queued]

    def close(self, timeout: float = 10.0) -> None:
        """Stop the writers once the queue is empty (requests still queued after timeout
        get BatcherClosed)."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        with self._wake:
            left, self._queue = self._queue, []
        for pending in left:
            pending.settle(BatcherClosed(f"{type(self).__name__} closed before this request"))

    @abstractmethod
    def _statement(self, requests: Sequence[In]) -> tuple[bytes, tuple[Any, ...]]:
        """The batch's statement and its parameters."""

    @abstractmethod
    def _answers(self, rows: Sequence[Sequence[Any]], requests: Sequence[In]) -> list[Any]:
        """Each request's answer (an Out, or the exception it raises) from the rows, which
        are the function's columns after the 1-based element number."""

    def _start_writers(self) -> None:
        for n in range(self._writers):
            thread = threading.Thread(
                target=self._write, name=f"{type(self).__name__}-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _next_batch(self) -> list[_Pending[In]] | None:
        """The queued requests (up to MAX_BATCH), waiting for one; None once closed and
        empty."""
        with self._wake:
            while not self._queue:
                if self._closed:
                    return None
                self._wake.wait()
            batch = self._queue[:MAX_BATCH]
            del self._queue[:MAX_BATCH]
            return batch

    def _write(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                answers = self._commit([pending.request for pending in batch])
            except BaseException as err:
                for pending in batch:
                    pending.settle(err)
                if not isinstance(err, Exception):
                    raise
                continue
            for pending, answer in zip(batch, answers, strict=True):
                pending.settle(answer)

    def _commit(self, requests: list[In]) -> list[Any]:
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(requests))
        try:
            return self._run(requests)
        except psycopg.OperationalError:
            raise  # the database is unreachable: the same for each of them
        except psycopg.Error as err:
            if len(requests) == 1:
                raise
            log.warning("a batch of %d failed (%s): retrying them one by one", len(requests), err)
        answers: list[Any] = []
        for request in requests:
            try:
                answers.extend(self._run([request]))
            except psycopg.OperationalError:
                raise
            except psycopg.Error as err:
                answers.append(err)
        return answers

    def _run(self, requests: list[In]) -> list[Any]:
        """One statement, retried when it lost a race (as LabelStore does)."""
        for attempt in range(1, ATTEMPTS + 1):
            statement, params = self._statement(requests)
            try:
                with self._pool.connection() as conn:
                    rows = conn.execute(statement, params).fetchall()
                if [row[0] for row in rows] != list(range(1, len(requests) + 1)):
                    raise RuntimeError(f"{len(rows)} rows answered {len(requests)} requests")
                return self._answers([row[1:] for row in rows], requests)
            except (pgerrors.DeadlockDetected, pgerrors.SerializationFailure) as err:
                if attempt == ATTEMPTS:
                    raise
                log.warning("retrying a batch after %s (attempt %d)", type(err).__name__, attempt)
            except pgerrors.UniqueViolation as err:
                if attempt == ATTEMPTS or err.diag.constraint_name not in _RETRY_ON_CONSTRAINTS:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")


class LabelBatcher(Batcher[Submission, Submitted]):
    """Validated submissions -> accept_labels."""

    def _statement(self, requests: Sequence[Submission]) -> tuple[bytes, tuple[Any, ...]]:
        return self._queries.accept_labels, label_batch_params(
            self._config, requests, random.randrange(PROGRESS_SHARDS)
        )

    def _answers(
        self, rows: Sequence[Sequence[Any]], requests: Sequence[Submission]
    ) -> list[Submitted | Exception]:
        answers: list[Submitted | Exception] = []
        for row, sub in zip(rows, requests, strict=True):
            try:
                answers.append(accepted(row, self._config, sub))
            except Exception as refused:  # a StoreError: the submission's answer
                answers.append(refused)
        return answers


class ClaimBatcher(Batcher[str, Leased]):
    """Labelers' claims -> claim_tasks."""

    def _statement(self, requests: Sequence[str]) -> tuple[bytes, tuple[Any, ...]]:
        return self._queries.claim_tasks, (list(requests), *claim_params(self._config, "")[1:])

    def _answers(
        self, rows: Sequence[Sequence[Any]], requests: Sequence[str]
    ) -> list[Leased | Exception]:
        answers: list[Leased | Exception] = []
        for row, labeler in zip(rows, requests, strict=True):
            try:
                answers.append(claimed(row, self._config, labeler))
            except Exception as refused:  # QuotaExceeded: the claim's answer
                answers.append(refused)
        return answers


class BatchedIO:
    """The store's StoreIO (labelops.store.labelstore) for a server that serves many
    requests at once: validated labels and claims go to the group-commit batchers, on a
    pool of `writers` connections of their own (a connection is held only while a batch's
    statement runs), and everything else runs on the calling thread or greenlet."""

    def __init__(self, dsn: str, config: WorkerConfig, *, writers: int = 1) -> None:
        self._pool: ConnectionPool[Any] = ConnectionPool(
            dsn,
            min_size=writers,
            max_size=writers,
            open=False,
            name=f"labelops-batcher-{config.name}",
            kwargs={"application_name": f"labelops-worker/{config.name}", "autocommit": True},
        )
        queries = Queries(config.schema_)
        self.labels = LabelBatcher(self._pool, config, queries, writers)
        self.claims = ClaimBatcher(self._pool, config, queries, writers)

    def open(self, timeout: float = POOL_WAIT_SECONDS) -> None:
        self._pool.open(wait=True, timeout=timeout)

    def close(self) -> None:
        self.labels.close()
        self.claims.close()
        self._pool.close()

    def blocking(self, work: Callable[[], T]) -> T:
        return work()

    def accept(self, submission: Submission) -> Submitted:
        return self.labels.submit(submission)

    def claim(self, labeler: str) -> Leased:
        return self.claims.submit(labeler)


def label_batch_params(
    config: WorkerConfig, subs: Sequence[Submission], shard: int
) -> tuple[Any, ...]:
    """accept_labels' arguments, in its order: the per-submission arrays, then what every
    element shares."""
    rows = [accept_params(config, sub, shard) for sub in subs]
    lease_seconds, _, max_leases, reap_limit = claim_params(config, "")[2:]
    return (
        [row[0] for row in rows],
        [row[1] for row in rows],
        [row[4] for row in rows],
        [row[5] for row in rows],
        [row[6] for row in rows],
        [sub.lease_next for sub in subs],
        config.target.labels_per_item,
        config.quotas.per_labeler_daily,
        config.namespace,
        config.name,
        shard,
        lease_seconds,
        max_leases,
        reap_limit,
    )
