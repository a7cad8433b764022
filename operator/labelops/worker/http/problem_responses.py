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


def store_problem(err: Exception, config: WorkerConfig) -> Problem | None:
    """The problem a store error (or a database outage) answers with; None for anything else.
    The app's error handlers answer with it, and so does each submission of a relayed batch
    (worker/http/relay.py)."""
    if isinstance(err, Problem):
        return err
    if isinstance(err, QuotaExceeded):
        return Problem(
            429,
            "quota-exceeded",
            err.message,
            headers={"Retry-After": str(err.retry_after)},
            extensions={"reason": err.reason, "retryAfter": err.retry_after},
        )
    if isinstance(err, InvalidLabel):
        detail = f"the label does not fit the {config.task.type.value} task; see errors"
        return Problem(422, "invalid-label", detail, errors=err.violations)
    for refusal, status in REFUSAL_STATUS.items():
        if isinstance(err, refusal):
            kind = err.reason.replace("_", "-")
            return Problem(status, kind, err.message, extensions={"reason": err.reason})
    if isinstance(err, DATABASE_OUTAGES):
        return Problem(
            503,
            "database-unavailable",
            "the campaign's database is unavailable (restarting or failing over); retry "
            "after Retry-After seconds, a submission with the same Idempotency-Key",
            headers={"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)},
            extensions={"retryAfter": OUTAGE_RETRY_AFTER_SECONDS},
        )
    return None


def register_problem_responses(app: Flask, config: WorkerConfig) -> None:
    @app.errorhandler(Problem)
    def problem(err: Problem) -> Response:
        # Kept for the response check (hooks.py), like every JSON body.
        g.response_document = err.body()
        return err.response()

    def refused(err: Exception) -> Response:
        if isinstance(err, DATABASE_OUTAGES):
            log.warning("database unavailable in %s %s: %s", request.method, request.path, err)
        found = store_problem(err, config)
        assert found is not None, f"no problem registered for {type(err).__name__}"
        return problem(found)

    for error in (QuotaExceeded, InvalidLabel, *REFUSAL_STATUS, *DATABASE_OUTAGES):
        app.register_error_handler(error, refused)

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
