"""A pooled connection in autocommit mode while the store (or the worker's quality job) uses
it, handed back to the pool as it was.

Each statement the store sends, and each `with conn.transaction()` of the quality job's
steps, must be a transaction of its own: inside an implicit transaction they would become
savepoints of one that holds every lock till the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg


@contextmanager
def autocommit(conn: psycopg.Connection[Any]) -> Iterator[None]:
    saved = conn.autocommit
    conn.autocommit = True
    try:
        yield
    finally:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            conn.autocommit = saved
