"""Group commit: the labels (and the claims) that arrive while a batch is committing go
together in the next one.

    labels = LabelBatcher(pool, config, queries)   # pool: psycopg_pool.AsyncConnectionPool
    submitted = await labels.submit(submission)    # Submitted, or raises its StoreError
    claims = ClaimBatcher(pool, config, queries)
    leased = await claims.submit(labeler)          # (ClaimedTask, payload size) or None

submit() queues its request and waits; a writer task sends whatever is queued to the
schema's accept_labels or claim_tasks (store/functions/) as one statement, so
a batch costs one round trip and one commit (one WAL flush) however many requests it
holds, and each request gets its own verdict. Nothing waits for a batch to fill: a lone
request goes at once, and under load batches grow by themselves with what arrived during
the previous commit. A request is answered only after its batch committed, so an accepted
label is durable when its labeler hears so, as before.

What a submission needs checked before the database (its value against the payload its
labeler leased, labelops.store.leased_payloads) is the caller's (LabelStore); so is the slow path
of a submission without a leased payload, which is not batched.

Errors: refusals are verdicts of their own element. A batch that fails as a whole (a lost
race on an Idempotency-Key; a deadlock, which the functions' lock order rules out, but the
database is the judge) is retried request by request, each alone, so one request's error
is its own. A database outage (labelops.store.outages: unreachable, restarting, read-only)
is every request's error at once: it is raised to all of them, never retried one by one.
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from labelops.api.worker_configmap import WorkerConfig
from labelops.store.claims import claim_params, claimed
from labelops.store.lost_races import ATTEMPTS, lost_race
from labelops.store.outages import DATABASE_OUTAGES
from labelops.store.progress import PROGRESS_SHARDS
from labelops.store.queries import Queries
from labelops.store.results import ClaimedTask
from labelops.store.submissions import Submission, Submitted, accept_params, accepted

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")

# Postgres takes a batch's locks row by row; a few hundred keep a batch well under the time
# a labeler notices.
MAX_BATCH = 256

Leased = tuple[ClaimedTask, int] | None


class Batcher(ABC, Generic[In, Out]):
    """Queues requests and commits them in batches, at most `writers` batches at once (each
    on a connection of the pool, which should hold that many)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        config: WorkerConfig,
        queries: Queries,
        writers: int = 1,
    ) -> None:
        self._pool = pool
        self._config = config
        self._queries = queries
        self._queue: list[tuple[In, asyncio.Future[Out]]] = []
        self._max_writers = writers
        # Counted by the writers themselves, as they stop: a task's done callbacks run a
        # loop iteration later, and a request queued in between would find every writer
        # slot taken and wait for a writer that never comes.
        self._active_writers = 0
        self._tasks: set[asyncio.Task[None]] = set()  # referenced while they run
        self.batches = 0
        self.largest_batch = 0

    async def submit(self, request: In) -> Out:
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._active_writers < self._max_writers:
            self._active_writers += 1
            writer = asyncio.create_task(self._write(), name=type(self).__name__)
            self._tasks.add(writer)
            writer.add_done_callback(self._tasks.discard)
        return await future

    @abstractmethod
    def _statement(self, requests: Sequence[In]) -> tuple[bytes, tuple[Any, ...]]:
        """The batch's statement and its parameters."""

    @abstractmethod
    def _answer(self, row: Sequence[Any], request: In) -> Out:
        """A request's answer from its row (the function's columns after the 1-based element
        number); raises the request's refusal (a StoreError such as QuotaExceeded)."""

    def _answers(
        self, rows: Sequence[Sequence[Any]], requests: Sequence[In]
    ) -> list[Out | Exception]:
        """Each request's answer: an Out, or the exception that is its refusal."""
        answers: list[Out | Exception] = []
        for row, request in zip(rows, requests, strict=True):
            try:
                answers.append(self._answer(row, request))
            except Exception as refused:
                answers.append(refused)
        return answers

    async def _write(self) -> None:
        try:
            await self._write_while_queued()
        finally:
            # No await between the last look at the queue and this: a request queued after
            # it starts a writer of its own.
            self._active_writers -= 1

    async def _write_while_queued(self) -> None:
        while self._queue:
            batch = self._queue[:MAX_BATCH]
            del self._queue[:MAX_BATCH]
            try:
                answers = await self._commit([request for request, _ in batch])
            except BaseException as err:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                if not isinstance(err, Exception):
                    raise
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                if future.done():  # its request was cancelled meanwhile
                    continue
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

    async def _commit(self, requests: list[In]) -> list[Any]:
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(requests))
        try:
            return await self._run(requests)
        except DATABASE_OUTAGES:
            raise  # the database is out of service: the same for each of them
        except psycopg.Error as err:
            if len(requests) == 1:
                raise
            log.warning("a batch of %d failed (%s): retrying them one by one", len(requests), err)
        answers: list[Any] = []
        for request in requests:
            try:
                answers.extend(await self._run([request]))
            except DATABASE_OUTAGES:
                raise
            except psycopg.Error as err:
                answers.append(err)
        return answers

    async def _run(self, requests: list[In]) -> list[Any]:
        """One statement, retried when it lost a race (as LabelStore does)."""
        for attempt in range(1, ATTEMPTS + 1):
            statement, params = self._statement(requests)
            try:
                async with self._pool.connection() as conn:
                    cursor = await conn.execute(statement, params)
                    rows = await cursor.fetchall()
                if [row[0] for row in rows] != list(range(1, len(requests) + 1)):
                    raise RuntimeError(f"{len(rows)} rows answered {len(requests)} requests")
                return self._answers([row[1:] for row in rows], requests)
            except psycopg.Error as err:
                if attempt == ATTEMPTS or not lost_race(err):
                    raise
                log.warning("retrying a batch after %s (attempt %d)", type(err).__name__, attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")


class LabelBatcher(Batcher[Submission, Submitted]):
    """Validated submissions -> accept_labels."""

    def _statement(self, requests: Sequence[Submission]) -> tuple[bytes, tuple[Any, ...]]:
        return self._queries.accept_labels, label_batch_params(
            self._config, requests, random.randrange(PROGRESS_SHARDS)
        )

    def _answer(self, row: Sequence[Any], request: Submission) -> Submitted:
        return accepted(row, self._config, request)


class ClaimBatcher(Batcher[str, Leased]):
    """Labelers' claims -> claim_tasks."""

    def _statement(self, requests: Sequence[str]) -> tuple[bytes, tuple[Any, ...]]:
        return self._queries.claim_tasks, (list(requests), *claim_params(self._config, "")[1:])

    def _answer(self, row: Sequence[Any], request: str) -> Leased:
        return claimed(row, self._config, request)


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
