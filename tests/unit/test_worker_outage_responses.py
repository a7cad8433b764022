"""A database out of service (unreachable, restarting, read-only after a failover) is answered
503 with Retry-After and a problem detail, never 500; the same request succeeds once it is
over. The chaos suite (tests/chaos) proves it against a real outage; this pins the mapping."""

from __future__ import annotations

from typing import Any, cast

import psycopg
import pytest
from psycopg import errors as pgerrors
from psycopg_pool import PoolTimeout
from test_worker_http_routes import CONFIG

from labelops.store import LabelStore
from labelops.worker.auth import BearerAuth
from labelops.worker.http.app import create_app
from labelops.worker.http.problem_responses import OUTAGE_RETRY_AFTER_SECONDS

TOKEN = "t" * 32


class _OutOfService:
    config = CONFIG

    def __init__(self, error: Exception) -> None:
        self._error = error

    def progress(self) -> Any:
        raise self._error


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("server closed the connection unexpectedly"),
        PoolTimeout("couldn't get a connection after 5.00 sec"),
        pgerrors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
        pgerrors.AdminShutdown("terminating connection due to administrator command"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_database_outage_is_a_503_with_retry_after(error: Exception) -> None:
    store = cast(LabelStore, _OutOfService(error))
    app = create_app(store, CONFIG, BearerAuth({"alice": TOKEN}), {})
    answer = app.test_client().get("/v1/progress", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == str(OUTAGE_RETRY_AFTER_SECONDS)
    assert answer.mimetype == "application/problem+json"
    body = answer.get_json()
    assert body["type"].endswith("/database-unavailable")
    assert body["retryAfter"] == OUTAGE_RETRY_AFTER_SECONDS
    assert "Idempotency-Key" in body["detail"]


def test_any_other_database_error_stays_a_500_with_details_in_the_log() -> None:
    store = cast(LabelStore, _OutOfService(pgerrors.UndefinedTable("relation missing")))
    app = create_app(store, CONFIG, BearerAuth({"alice": TOKEN}), {})
    answer = app.test_client().get("/v1/progress", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 500
    assert "relation" not in answer.get_data(as_text=True)
