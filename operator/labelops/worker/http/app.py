"""The worker's HTTP API (Flask): labelers claim tasks and submit labels.

Each view is named by its OpenAPI operationId, so the hooks below find the operation of every
request: authentication for operations that declare security, request bodies validated
against the served document, responses checked against it on the way out, and metrics by
route template. Every refusal is an RFC 9457 problem (see problem_details.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from flask import Flask, Response, g, render_template, request
from flask.sessions import NullSession, SessionInterface
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import PathConverter

from labelops.api.worker_configmap import WorkerConfig
from labelops.store import ClaimedTask, LabelStore
from labelops.store.errors import Conflict, InvalidLabel, NotFound, QuotaExceeded, StoreError
from labelops.worker.auth import AuthFailure, BearerAuth
from labelops.worker.config import ResponseValidation
from labelops.worker.http import json_bodies
from labelops.worker.ingest_messages import MAX_ID_LENGTH
from labelops.worker.metrics import WorkerMetrics
from labelops.worker.openapi_document import IDEMPOTENCY_KEY_MAX, JSON, PROBLEM_JSON, build_document
from labelops.worker.openapi_validation import SpecValidator
from labelops.worker.problem_details import Problem
from labelops.worker.readiness import ReadinessCheck, ReadinessProbe

log = logging.getLogger(__name__)

T = TypeVar("T")


class RunBlocking(Protocol):
    def __call__(self, work: Callable[[], T]) -> T: ...


IDEMPOTENCY_HEADER = "Idempotency-Key"
NEXT_PARAMETER = "next"
# The longest label is a free-text answer of 100,000 characters (4 bytes each at worst).
MAX_BODY_BYTES = 1024 * 1024
# The labeling page runs only its own script and talks only to this worker.
PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class NoSessions(SessionInterface):
    """Labelers authenticate every request with a bearer token and the page keeps no
    cookie: there is no session. Flask would build an empty one per request and check on
    the way out whether to save it; this hands every request the same immutable one."""

    _none = NullSession()

    def open_session(self, app: Flask, request: Any) -> NullSession:
        return self._none

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        return None


class ItemIdConverter(PathConverter):
    """External item ids are arbitrary strings: '/' (sent as %2F) and a leading '/' too."""

    regex = ".+?"
    # Werkzeug matches one path segment at a time unless told the value spans several.
    part_isolating = False


def create_app(
    store: LabelStore,
    config: WorkerConfig,
    tokens: Mapping[str, str],
    readiness_checks: Mapping[str, ReadinessCheck],
    *,
    response_validation: ResponseValidation = ResponseValidation.LOG,
    run_blocking: RunBlocking | None = None,
) -> Flask:
    """run_blocking runs work that may block, such as the readiness checks, where the server
    wants it (labelops.worker.storeio: on a thread, so the event loop keeps serving);
    without it, on the calling thread."""
    app = Flask("labelops.worker")
    app.session_interface = NoSessions()
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    # The page is same-origin, so nothing needs CORS preflights: OPTIONS is a 405 like any
    # other undocumented method.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.url_map.converters["item_id"] = ItemIdConverter
    # An id may hold '//' or end in '/': never redirect to a "cleaner" URL.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False

    document = build_document(config)
    spec = SpecValidator(document)
    document_bytes = json.dumps(document).encode()
    campaign = json_bodies.campaign(config)
    auth = BearerAuth(tokens)
    probe = ReadinessProbe(readiness_checks)
    blocking: RunBlocking = run_blocking or _call
    meter = WorkerMetrics()

    @app.before_request
    def start_clock_and_authenticate() -> None:
        g.started = time.perf_counter()
        operation = spec.operations.get(request.endpoint or "")
        if operation is None or not operation.spec.get("security"):
            return
        outcome = auth.authenticate(request.headers.get("Authorization"))
        if isinstance(outcome, AuthFailure):
            raise Problem(
                401,
                "unauthorized",
                outcome.detail,
                headers={"WWW-Authenticate": outcome.www_authenticate},
            )
        g.labeler = outcome

    # after_request hooks run in reverse order of registration: metrics see the final status.
    @app.after_request
    def record_metrics(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        started = g.get("started", time.perf_counter())
        meter.observe_request(
            route, request.method, response.status_code, time.perf_counter() - started
        )
        return response

    @app.after_request
    def check_response_against_spec(response: Response) -> Response:
        operation = spec.operations.get(request.endpoint or "")
        # HEAD is answered by the GET view but is not an operation of its own.
        if (
            response_validation is ResponseValidation.OFF
            or operation is None
            or operation.method.upper() != request.method
        ):
            return response
        body = g.get("response_document")
        if body is None and response.mimetype in (JSON, PROBLEM_JSON):
            body = json.loads(response.get_data())
        violations = spec.response_violations(
            request.endpoint or "",
            response.status_code,
            response.mimetype or "",
            response.headers,
            body,
        )
        if not violations:
            return response
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        meter.contract_violations.labels(route).inc()
        log.error(
            "response of %s %s breaks the OpenAPI document: %s",
            request.method,
            route,
            "; ".join(violations),
        )
        if response_validation is ResponseValidation.STRICT:
            return Problem(
                500, "internal-error", "response contract violated: " + "; ".join(violations)
            ).response()
        return response

    # --- errors ----------------------------------------------------------------------

    @app.errorhandler(Problem)
    def problem(err: Problem) -> Response:
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

    @app.errorhandler(Conflict)
    def conflict(err: Conflict) -> Response:
        return problem(
            Problem(
                409, err.reason.replace("_", "-"), err.message, extensions={"reason": err.reason}
            )
        )

    @app.errorhandler(NotFound)
    def not_found(err: NotFound) -> Response:
        return problem(Problem(404, "not-found", err.message, extensions={"reason": err.reason}))

    @app.errorhandler(InvalidLabel)
    def invalid_label(err: InvalidLabel) -> Response:
        return problem(
            Problem(
                422,
                "invalid-label",
                f"the label does not fit the {config.task.type.value} task; see errors",
                errors=err.violations,
            )
        )

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

    # --- helpers ---------------------------------------------------------------------

    def respond(document: Any, status: int = 200) -> Response:
        g.response_document = document
        return Response(json.dumps(document), status=status, mimetype=JSON)

    def submission_body() -> Any:
        if not request.mimetype or not (
            request.mimetype == JSON or request.mimetype.endswith("+json")
        ):
            raise Problem(
                415,
                "unsupported-media-type",
                f"send the label as JSON with 'Content-Type: {JSON}', "
                f"not {request.mimetype or 'no Content-Type'}",
            )
        try:
            body = json.loads(request.get_data())
        except (ValueError, UnicodeDecodeError) as err:
            raise Problem(400, "invalid-json", f"the body is not valid JSON: {err}") from None
        violations = spec.request_violations("submitLabel", body)
        if violations:
            only_value = all(v.pointer.startswith("/value") for v in violations)
            raise Problem(
                422,
                "invalid-label" if only_value else "invalid-request",
                'send {"value": <label>}; '
                + ("the label does not fit the task" if only_value else "the body does not fit")
                + "; see errors",
                errors=violations,
            )
        return body

    def check_item_id(item_id: str) -> None:
        if len(item_id) > MAX_ID_LENGTH or "\x00" in item_id:
            raise Problem(
                400,
                "invalid-request",
                f"no item can have this id: ids are 1 to {MAX_ID_LENGTH} characters without NUL",
            )

    def next_requested() -> bool:
        values = request.args.getlist(NEXT_PARAMETER)
        if not values:
            return False
        if len(values) > 1 or values[0] not in ("true", "false"):
            raise Problem(
                400,
                "invalid-request",
                f"the query parameter {NEXT_PARAMETER} must be given once, as true or false",
            )
        return values[0] == "true"

    def idempotency_key() -> str | None:
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            return None
        if not (1 <= len(key) <= IDEMPOTENCY_KEY_MAX and all("!" <= c <= "~" for c in key)):
            raise Problem(
                400,
                "invalid-request",
                f"{IDEMPOTENCY_HEADER} must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII "
                "characters (no spaces), e.g. a UUID",
            )
        return key

    # --- labeling --------------------------------------------------------------------

    @app.post("/v1/tasks/claim", endpoint="claimTask")
    def claim_task() -> Response:
        try:
            task = store.claim(g.labeler)
        except QuotaExceeded:
            meter.claims.labels("refused").inc()
            raise
        if task is None:
            meter.claims.labels("empty").inc()
            return Response(status=204)
        meter.claims.labels("leased").inc()
        return respond(json_bodies.task(task))

    @app.post("/v1/tasks/<item_id:item_id>/labels", endpoint="submitLabel")
    def submit_label(item_id: str) -> Response:
        upcoming: ClaimedTask | QuotaExceeded | None = None
        try:
            check_item_id(item_id)
            key = idempotency_key()
            with_next = next_requested()
            body = submission_body()
            if with_next:
                # The label and the next lease commit together (one round trip).
                result, upcoming = store.submit_and_claim(
                    g.labeler, item_id, body["value"], idempotency_key=key
                )
            else:
                result = store.submit(g.labeler, item_id, body["value"], idempotency_key=key)
        except (Problem, StoreError) as err:
            meter.labels_rejected.labels(_rejection_reason(err)).inc()
            raise
        if not result.replayed:
            meter.labels_accepted.inc()
        receipt = json_bodies.receipt(result)
        if with_next:
            meter.claims.labels(_claim_outcome(upcoming)).inc()
            # A quota that refused the next lease is the labeler's next claim's to explain.
            receipt["next"] = (
                json_bodies.task(upcoming) if isinstance(upcoming, ClaimedTask) else None
            )
        return respond(receipt, 200 if result.replayed else 201)

    @app.post("/v1/tasks/<item_id:item_id>/release", endpoint="releaseTask")
    def release_task(item_id: str) -> Response:
        check_item_id(item_id)
        if not store.release(g.labeler, item_id):
            raise Problem(
                409,
                "not-leased",
                f"you hold no lease on item {item_id!r}: claim it first (POST /v1/tasks/claim)",
            )
        return respond({"itemId": item_id, "released": True})

    @app.get("/v1/me", endpoint="getMe")
    def get_me() -> Response:
        return respond(json_bodies.me(store.me(g.labeler)))

    @app.get("/v1/progress", endpoint="getProgress")
    def get_progress() -> Response:
        return respond(json_bodies.progress(store.progress(), config))

    @app.get("/v1/campaign", endpoint="getCampaign")
    def get_campaign() -> Response:
        return respond(campaign)

    # --- operations ------------------------------------------------------------------

    @app.get("/healthz", endpoint="getHealth")
    def get_health() -> Response:
        return respond({"status": "ok"})

    @app.get("/readyz", endpoint="getReadiness")
    def get_readiness() -> Response:
        state = blocking(probe.readiness)
        if state.ready:
            return respond({"status": "ready", "checks": state.checks})
        failing = ", ".join(f"{name}: {why}" for name, why in state.checks.items() if why != "ok")
        raise Problem(
            503, "not-ready", f"not ready: {failing}", extensions={"checks": state.checks}
        )

    @app.get("/metrics", endpoint="getMetrics")
    def get_metrics() -> Response:
        return Response(meter.exposition(), content_type=meter.content_type)

    @app.get("/openapi.json", endpoint="getOpenapi")
    def get_openapi() -> Response:
        return Response(document_bytes, mimetype=JSON)

    @app.get("/", endpoint="getLabelingPage")
    def labeling_page() -> Response:
        html = render_template("index.html", config=config)
        return Response(html, mimetype="text/html", headers=PAGE_SECURITY_HEADERS)

    return app


def _call(work: Callable[[], T]) -> T:
    return work()


def _kind_for_status(status: int) -> str:
    return {
        400: "invalid-request",
        404: "not-found",
        405: "method-not-allowed",
        413: "payload-too-large",
        415: "unsupported-media-type",
    }.get(status, "internal-error" if status >= 500 else "invalid-request")


def _claim_outcome(upcoming: ClaimedTask | QuotaExceeded | None) -> str:
    if isinstance(upcoming, ClaimedTask):
        return "leased"
    return "refused" if isinstance(upcoming, QuotaExceeded) else "empty"


def _rejection_reason(err: Problem | StoreError) -> str:
    return err.kind if isinstance(err, Problem) else err.reason.replace("_", "-")
