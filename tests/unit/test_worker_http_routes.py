"""The worker's Flask app: every operation of its OpenAPI document has exactly one view, in
the blueprint of its area, and the hooks find the operation behind a blueprint's endpoint.

No store is needed to build the app or to answer the operations checked here (health, the
document, unknown paths and methods); the label routes run against the real store in
tests/integration/test_worker_api.py.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from flask import Flask

from labelops.api.worker_configmap import WorkerConfig
from labelops.store import LabelStore
from labelops.worker.auth import BearerAuth
from labelops.worker.http.app import create_app
from labelops.worker.openapi_document import build_document

CONFIG = WorkerConfig.model_validate(
    {
        "namespace": "ns",
        "name": "c",
        "task": {"instructions": "x", "type": "pairwise"},
        "target": {"items": 5, "labelsPerItem": 2},
        "quotas": {},
        "schema": "lc_ns_c",
        "topics": {"items": "i", "labels": "l"},
        "consumerGroup": "g",
    }
)

AREAS = {
    "claimTask": "tasks",
    "submitLabel": "tasks",
    "releaseTask": "tasks",
    "relayLabels": "relay",
    "getMe": "labeler",
    "getCampaign": "campaign",
    "getProgress": "campaign",
    "getHealth": "health",
    "getReadiness": "health",
    "getMetrics": "health",
    "getOpenapi": "health",
    "getLabelingPage": "page",
}


@pytest.fixture
def app() -> Flask:
    # The store is never called by the requests below.
    return create_app(
        cast(LabelStore, None), CONFIG, BearerAuth({"alice": "t" * 32}), {"ok": lambda: None}
    )


def operations() -> dict[str, tuple[str, str]]:
    """operationId -> (method, Flask path) of the document."""
    found = {}
    for path, item in build_document(CONFIG)["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "operationId" in operation:
                flask_path = path.replace("{id}", "<item_id:item_id>")
                found[operation["operationId"]] = (method.upper(), flask_path)
    return found


def test_every_operation_has_one_view_in_the_blueprint_of_its_area(app: Flask) -> None:
    routes: dict[str, tuple[set[str], str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        area, _, operation_id = rule.endpoint.partition(".")
        assert operation_id not in routes, f"{operation_id} has two views"
        assert AREAS.get(operation_id) == area, f"{rule.endpoint} is not in its area's blueprint"
        routes[operation_id] = (set(rule.methods or ()) - {"HEAD"}, rule.rule)
    assert {op: (methods, path) for op, (methods, path) in routes.items()} == {
        op: ({method}, path) for op, (method, path) in operations().items()
    }


def test_operations_without_security_answer_without_a_token(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready", "checks": {"ok": "ok"}}
    assert client.get("/openapi.json").get_json()["info"]["title"]


def test_operations_with_security_refuse_a_missing_token_before_the_store(app: Flask) -> None:
    response = app.test_client().post("/v1/tasks/claim")
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("get", "/v1/nowhere", 404, None),
        ("put", "/v1/tasks/claim", 405, "POST"),
        ("options", "/healthz", 405, "GET, HEAD"),
    ],
)
def test_unknown_paths_and_methods_are_problems(
    app: Flask, method: str, path: str, status: int, allow: str | None
) -> None:
    response = getattr(app.test_client(), method)(path)
    body: Any = response.get_json()
    assert (response.status_code, response.mimetype) == (status, "application/problem+json")
    assert body["status"] == status
    assert response.headers.get("Allow") == allow
