"""Errors that mean a statement lost a race with a concurrent one: run it again.

Deadlocks and serialisation failures (the functions' lock order rules deadlocks out, but the
database is the judge), and unique violations on the labels' constraints, where a concurrent
transaction got there first: the retry sees its result (e.g. answers a duplicate
Idempotency-Key as a replay). The store and the batcher try a statement ATTEMPTS times.
"""

from __future__ import annotations

from psycopg import errors as pgerrors

ATTEMPTS = 3
_RACED_CONSTRAINTS = frozenset(
    {"labels_idempotency_key_unique", "labels_item_labeler_unique", "labels_item_ordinal_unique"}
)


def lost_race(err: BaseException) -> bool:
    if isinstance(err, (pgerrors.DeadlockDetected, pgerrors.SerializationFailure)):
        return True
    return (
        isinstance(err, pgerrors.UniqueViolation) and err.diag.constraint_name in _RACED_CONSTRAINTS
    )
