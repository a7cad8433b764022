"""The health blueprint: what the platform and API clients ask of a pod, without a token.

/healthz (liveness: the process serves), /readyz (readiness: every check passes, else a 503
naming the failing ones), /metrics (Prometheus) and /openapi.json (the document this worker
holds itself to).
"""

from __future__ import annotations

from flask import Blueprint, Response

from labelops.worker.http.services import Services, respond
from labelops.worker.openapi_document import JSON
from labelops.worker.problem_details import Problem


def health_blueprint(services: Services) -> Blueprint:
    health = Blueprint("health", __name__)
    meter = services.meter

    @health.get("/healthz", endpoint="getHealth")
    def get_health() -> Response:
        return respond({"status": "ok"})

    @health.get("/readyz", endpoint="getReadiness")
    def get_readiness() -> Response:
        state = services.run_blocking(services.probe.readiness)
        if state.ready:
            return respond({"status": "ready", "checks": state.checks})
        failing = ", ".join(f"{name}: {why}" for name, why in state.checks.items() if why != "ok")
        raise Problem(
            503, "not-ready", f"not ready: {failing}", extensions={"checks": state.checks}
        )

    @health.get("/metrics", endpoint="getMetrics")
    def get_metrics() -> Response:
        return Response(meter.exposition(), content_type=meter.content_type)

    @health.get("/openapi.json", endpoint="getOpenapi")
    def get_openapi() -> Response:
        return Response(services.document_bytes, mimetype=JSON)

    return health
