"""create_app: the worker's Flask app, one blueprint per area of the API.

Each view is registered under its OpenAPI operationId (inside its blueprint), so the hooks
find the operation of every request: authentication for operations that declare security,
request bodies validated against the served document, responses checked against it on the
way out, and metrics by route template. Every refusal is an RFC 9457 problem.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import Flask, Response
from flask.sessions import NullSession, SessionInterface
from werkzeug.routing import PathConverter

from labelops.api.worker_configmap import WorkerConfig
from labelops.store import LabelStore
from labelops.worker.auth import BearerAuth
from labelops.worker.config import ResponseValidation
from labelops.worker.http.campaign import campaign_blueprint
from labelops.worker.http.health import health_blueprint
from labelops.worker.http.hooks import register_hooks
from labelops.worker.http.labeler import labeler_blueprint
from labelops.worker.http.page import page_blueprint
from labelops.worker.http.problem_responses import register_problem_responses
from labelops.worker.http.relay import relay_blueprint
from labelops.worker.http.services import RunBlocking, Services
from labelops.worker.http.tasks import tasks_blueprint
from labelops.worker.metrics import CampaignGauges, WorkerMetrics
from labelops.worker.openapi_document import build_document
from labelops.worker.openapi_validation import SpecValidator
from labelops.worker.readiness import ReadinessCheck, ReadinessProbe

# The longest label is a free-text answer of 100,000 characters (4 bytes each at worst).
MAX_BODY_BYTES = 1024 * 1024

T = TypeVar("T")


def _call(work: Callable[[], T]) -> T:
    return work()


def create_app(
    store: LabelStore,
    config: WorkerConfig,
    auth: BearerAuth,
    readiness_checks: Mapping[str, ReadinessCheck],
    *,
    response_validation: ResponseValidation = ResponseValidation.LOG,
    run_blocking: RunBlocking | None = None,
) -> Flask:
    """run_blocking runs work that may block, such as the readiness checks, where the server
    wants it (labelops.worker.storeio: on a thread, so the event loop keeps serving);
    without it, on the calling thread."""
    # Named after the worker package: templates/ and static/ (the page) live there.
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
    services = Services(
        store=store,
        config=config,
        spec=SpecValidator(document),
        document_bytes=json.dumps(document).encode(),
        auth=auth,
        probe=ReadinessProbe(readiness_checks),
        meter=WorkerMetrics(campaign=CampaignGauges(lambda: store.active_leases())),
        response_validation=response_validation,
        run_blocking=run_blocking or _call,
    )
    register_hooks(app, services)
    register_problem_responses(app, config)
    for blueprint in (
        tasks_blueprint(services),
        relay_blueprint(services),
        labeler_blueprint(services),
        campaign_blueprint(services),
        health_blueprint(services),
        page_blueprint(services),
    ):
        app.register_blueprint(blueprint)
    return app


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
