"""The store's waiting, done the event loop's way (labelops.store.labelstore.StoreIO).

The HTTP server runs every request on one asyncio loop, in a greenlet (greenbridge). A
request that waits for the database must not stop the loop, so:
  - accept() (a validated label) and claim() go to the group-commit batchers
    (labelops.store.batching), on the loop itself, with async connections of their own;
  - blocking() (claims, releases, reads, the slow path of a submission) runs the store's
    synchronous code on a small thread pool with the store's usual connection pool.
Called outside a request (the worker's start-up, tests calling the store directly) both
simply run on the calling thread.

start() and stop() run on the loop, at the server's start and after its last request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from psycopg_pool import AsyncConnectionPool

from labelops.api.worker_configmap import WorkerConfig
from labelops.store.batching import ClaimBatcher, LabelBatcher
from labelops.store.labelstore import UNBATCHED, Unbatched
from labelops.store.queries import Queries
from labelops.store.results import ClaimedTask
from labelops.store.submissions import Submission, Submitted
from labelops.worker.greenbridge import in_bridge, wait_for

T = TypeVar("T")

POOL_WAIT_SECONDS = 30.0
# How long a request waits for a batcher connection: longer means the database is out (a
# restart takes a second or two), and the labeler gets 503 with Retry-After instead of a hang.
REQUEST_CONNECTION_WAIT_SECONDS = 5.0


class LoopStoreIO:
    def __init__(
        self, dsn: str, config: WorkerConfig, *, threads: int, batch_writers: int = 1
    ) -> None:
        """threads: for blocking(); batch_writers: batches committing at once (labels and
        claims together), each on a connection of its own."""
        self._dsn = dsn
        self._config = config
        self._threads = threads
        self._writers = batch_writers
        self._executor: ThreadPoolExecutor | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        self.labels: LabelBatcher | None = None
        self.claims: ClaimBatcher | None = None

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="store")
        self._pool = AsyncConnectionPool(
            self._dsn,
            # Shared by the label and the claim batcher: a connection is held only while a
            # batch's statement runs.
            min_size=self._writers,
            max_size=self._writers,
            timeout=REQUEST_CONNECTION_WAIT_SECONDS,
            open=False,
            name=f"labelops-batcher-{self._config.name}",
            kwargs={
                "application_name": f"labelops-worker/{self._config.name}",
                "autocommit": True,
            },
        )
        await self._pool.open(wait=True, timeout=POOL_WAIT_SECONDS)
        queries = Queries(self._config.schema_)
        self.labels = LabelBatcher(self._pool, self._config, queries, self._writers)
        self.claims = ClaimBatcher(self._pool, self._config, queries, self._writers)

    async def stop(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def blocking(self, work: Callable[[], T]) -> T:
        if self._executor is None or not in_bridge():
            return work()
        return wait_for(asyncio.get_running_loop().run_in_executor(self._executor, work))

    def accept(self, submission: Submission) -> Submitted | Unbatched:
        if self.labels is None or not in_bridge():
            return UNBATCHED
        return wait_for(self.labels.submit(submission))

    def claim(self, labeler: str) -> tuple[ClaimedTask, int] | Unbatched | None:
        if self.claims is None or not in_bridge():
            return UNBATCHED
        return wait_for(self.claims.submit(labeler))
