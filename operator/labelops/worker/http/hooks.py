"""What every request of the worker's HTTP API goes through, before and after its view.

Before: the clock starts, and operations whose OpenAPI entry declares security get their
bearer token checked: a labeler's token or OIDC JWT, or a service's (the pool's router) with
the labeler it acts for in Labelops-Labeler (worker/auth.py); the labeler lands in flask.g.
An operation marked service-only (the router's batches, relay.py) takes a service's token
alone, and its body names the labelers.
After: the response is checked against the OpenAPI document (logged, counted, or refused as
a 500, by ResponseValidation), then metrics are recorded by route template with the final
status.
"""

from __future__ import annotations

import json
import logging
import time

from flask import Flask, Response, g, request

from labelops.api.pool_router import ON_BEHALF_OF_HEADER
from labelops.worker.auth import AuthFailure, Service, acting_labeler
from labelops.worker.config import ResponseValidation
from labelops.worker.http.services import Services, operation_id
from labelops.worker.openapi_document import JSON, PROBLEM_JSON, SERVICE_ONLY
from labelops.worker.problem_details import Problem

log = logging.getLogger(__name__)


def register_hooks(app: Flask, services: Services) -> None:
    spec = services.spec
    meter = services.meter

    @app.before_request
    def start_clock_and_authenticate() -> None:
        g.started = time.perf_counter()
        operation = spec.operations.get(operation_id())
        if operation is None or not operation.spec.get("security"):
            return
        principal = services.auth.authenticate(
            request.headers.get("Authorization"), services.run_blocking
        )
        if isinstance(principal, AuthFailure):
            raise _refused(principal)
        if operation.spec.get(SERVICE_ONLY):
            if not isinstance(principal, Service):
                raise Problem(
                    403,
                    "forbidden",
                    f"{request.method} {request.path} is the pool router's: a labeler submits "
                    "each label with POST /v1/tasks/{id}/labels",
                    extensions={"reason": "service-only"},
                )
            return  # the request names its labelers itself
        labeler = acting_labeler(principal, request.headers.get(ON_BEHALF_OF_HEADER))
        if isinstance(labeler, AuthFailure):
            raise _refused(labeler)
        g.labeler = labeler

    # after_request hooks run in reverse order of registration: metrics see the final status.
    @app.after_request
    def record_metrics(response: Response) -> Response:
        started = g.get("started", time.perf_counter())
        meter.observe_request(
            _route(), request.method, response.status_code, time.perf_counter() - started
        )
        return response

    @app.after_request
    def check_response_against_spec(response: Response) -> Response:
        operation = spec.operations.get(operation_id())
        # HEAD is answered by the GET view but is not an operation of its own.
        if (
            services.response_validation is ResponseValidation.OFF
            or operation is None
            or operation.method.upper() != request.method
        ):
            return response
        body = g.get("response_document")
        if body is None and response.mimetype in (JSON, PROBLEM_JSON):
            body = json.loads(response.get_data())
        violations = spec.response_violations(
            operation_id(),
            response.status_code,
            response.mimetype or "",
            response.headers,
            body,
        )
        if not violations:
            return response
        meter.contract_violations.labels(_route()).inc()
        log.error(
            "response of %s %s breaks the OpenAPI document: %s",
            request.method,
            _route(),
            "; ".join(violations),
        )
        if services.response_validation is ResponseValidation.STRICT:
            return Problem(
                500, "internal-error", "response contract violated: " + "; ".join(violations)
            ).response()
        return response


def _refused(failure: AuthFailure) -> Problem:
    return Problem(
        failure.status,
        failure.kind,
        failure.detail,
        headers=failure.headers,
        extensions=failure.problem_extensions(),
    )


def _route() -> str:
    return request.url_rule.rule if request.url_rule is not None else "unmatched"
