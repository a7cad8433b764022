"""Every refusal of the worker's HTTP API as an RFC 9457 problem (application/problem+json).

The store's errors map to statuses here: QuotaExceeded -> 429 with Retry-After, Conflict ->
409, NotFound -> 404, InvalidLabel -> 422, Blocked -> 403; a database outage (unreachable,
restarting, read-only after a failover: labelops.store.outages) -> 503 with Retry-After, since
the same request succeeds once it is over (a submission retried with its Idempotency-Key gets
the answer of the one that committed, if one did); werkzeug's (unknown path, wrong method, body
too large) keep their status; anything unexpected is a 500 whose details stay in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from labelops.api.worker_configmap import WorkerConfig
from labelops.store.errors import (
    Blocked,
    Conflict,
    InvalidLabel,
    NotFound,
    QuotaExceeded,
    StoreError,
)
from labelops.store.outages import DATABASE_OUTAGES
from labelops.worker.problem_details import Problem

log = logging.getLogger(__name__)

# Seconds a client waits before retrying during a database outage: a restart or a failover
# takes a few.
OUTAGE_RETRY_AFTER_SECONDS = 2

# The store's refusals that say no more than their reason: the problem's type is the reason
# (item_full -> item-full), which also goes along as an extension.
REFUSAL_STATUS: dict[type[StoreError], int] = {Conflict: 409, Blocked: 403, NotFound: 404}


def register_problem_responses(app: Flask, config: WorkerConfig) -> None:
    @app.errorhandler(Problem)
    def problem(err: Problem) -> Response:
        # Kept for the response check (hooks.py), like every JSON body.
        g.response_document = err.body()
        return err.response()

    @app.errorhandler(QuotaExceeded)
    def quota_exceeded(err: QuotaExceeded) -> Response:
        return problem(
            Problem(
                429,
                "quota-exceeded",
                err.message,
                headers={"Retry-After": str(err.retry_after)},
                extensions={"reason": err.reason, "retryAfter": err.retry_after},
            )
        )

    def refused(status: int) -> Callable[[StoreError], Response]:
        def refusal(err: StoreError) -> Response:
            kind = err.reason.replace("_", "-")
            return problem(Problem(status, kind, err.message, extensions={"reason": err.reason}))

        return refusal

    for refusal, status in REFUSAL_STATUS.items():
        app.register_error_handler(refusal, refused(status))

    @app.errorhandler(InvalidLabel)
    def invalid_label(err: InvalidLabel) -> Response:
        detail = f"the label does not fit the {config.task.type.value} task; see errors"
        return problem(Problem(422, "invalid-label", detail, errors=err.violations))

    def database_unavailable(err: Exception) -> Response:
        log.warning("database unavailable in %s %s: %s", request.method, request.path, err)
        return problem(
            Problem(
                503,
                "database-unavailable",
                "the campaign's database is unavailable (restarting or failing over); retry "
                "after Retry-After seconds, a submission with the same Idempotency-Key",
                headers={"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)},
                extensions={"retryAfter": OUTAGE_RETRY_AFTER_SECONDS},
            )
        )

    for outage in DATABASE_OUTAGES:
        app.register_error_handler(outage, database_unavailable)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        status = err.code or 500
        headers = {}
        if isinstance(err, MethodNotAllowed) and err.valid_methods:
            headers["Allow"] = ", ".join(sorted(err.valid_methods))
            detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
        elif status == 404:
            detail = f"no such endpoint: {request.path}; see /openapi.json"
        else:
            detail = err.description or err.name
        return problem(Problem(status, _kind_for_status(status), detail, headers=headers))

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> Response:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return problem(
            Problem(500, "internal-error", "unexpected error; the worker's log has the details")
        )


def _kind_for_status(status: int) -> str:
    return {
        400: "invalid-request",
        404: "not-found",
        405: "method-not-allowed",
        413: "payload-too-large",
        415: "unsupported-media-type",
    }.get(status, "internal-error" if status >= 500 else "invalid-request")
