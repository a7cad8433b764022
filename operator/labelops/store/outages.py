"""Errors that mean the database is out of service, not that it refused a request.

A server killed or restarting, a cut connection, a pool that cannot connect (psycopg's
OperationalError, psycopg_pool's PoolTimeout is one) and a server that turned read-only
(SQLSTATE 25006, what a failed-over primary or a standby answers a write with) all pass:
the same request succeeds once the database is back. Callers wait them out (ingest, the
outbox relay) or answer 503 with Retry-After (the HTTP API); they never retry such a batch
request by request, nor report it as the request's own fault.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pgerrors

DATABASE_OUTAGES: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    pgerrors.ReadOnlySqlTransaction,
)


def is_database_outage(err: BaseException) -> bool:
    return isinstance(err, DATABASE_OUTAGES)
