"""What the views and hooks of the worker's HTTP API share, built once per app."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from flask import Response, g, request

from labelops.api.worker_configmap import WorkerConfig
from labelops.store import LabelStore
from labelops.worker.auth import BearerAuth
from labelops.worker.config import ResponseValidation
from labelops.worker.metrics import WorkerMetrics
from labelops.worker.openapi_document import JSON
from labelops.worker.openapi_validation import SpecValidator
from labelops.worker.readiness import ReadinessProbe

T = TypeVar("T")


class RunBlocking(Protocol):
    def __call__(self, work: Callable[[], T]) -> T: ...


@dataclass(frozen=True)
class Services:
    store: LabelStore
    config: WorkerConfig
    # The served OpenAPI document: as a validator of requests and responses, and as bytes.
    spec: SpecValidator
    document_bytes: bytes
    auth: BearerAuth
    probe: ReadinessProbe
    meter: WorkerMetrics
    response_validation: ResponseValidation
    # Where work that may block runs (the readiness checks): see create_app.
    run_blocking: RunBlocking


def operation_id() -> str:
    """The OpenAPI operationId of the current request: views are registered under it, inside
    their blueprint ("tasks.claimTask" -> "claimTask"); "" when no view matched."""
    return (request.endpoint or "").rpartition(".")[2]


def respond(document: Any, status: int = 200) -> Response:
    """A JSON response; the document is kept for the response check (hooks.py), so the
    body is not parsed back."""
    g.response_document = document
    return Response(json.dumps(document), status=status, mimetype=JSON)
