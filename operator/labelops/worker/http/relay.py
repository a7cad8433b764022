"""The relay blueprint: a pool's router hands the worker many labelers' submissions in one
request (POST /v1/relay/labels), and each gets the answer it would have had alone.

    {"submissions": [{"labeler": "ann", "itemId": "i-1", "body": {"value": ...},
                      "idempotencyKey": "k-1", "next": true}, ...]}
    -> 200 {"results": [{"status": 201, "body": <LabelReceipt>},
                        {"status": 422, "body": <Problem>}, ...]}

Why: behind the router, the worker's cost per label was mostly HTTP (parsing a request,
writing a response: about 70 % of its CPU at saturation) and the router's a request and a
reply to the worker per label. A batch pays those once. The submissions of a batch run at
once, each on a greenlet of its own (greenbridge.run_each), so they reach the store's group
commit together and commit in one transaction. A submission whose task another process (or
replica) leased would miss this process's leased payloads and read its item alone, in a
transaction of its own: the batch reads all of those payloads first, in one query
(LabelStore.recall_leased).

Only the router's service credential may call it (403 for anyone else): it names each
submission's labeler in the batch instead of the Labelops-Labeler header. Each submission is
checked as POST /v1/tasks/{id}/labels checks its request (labeler id, item id,
Idempotency-Key, the body against LabelSubmission) and refused on its own, with the status
and problem of that endpoint; the batch as a whole is refused (400, 415, 422) only when it
is not a batch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request

from labelops.worker.auth import LABELER_ID_MAX, labeler_id_problem
from labelops.worker.greenbridge import run_each
from labelops.worker.http.problem_responses import store_problem
from labelops.worker.http.services import Services, respond
from labelops.worker.http.tasks import (
    check_item_id,
    check_submission,
    checked_idempotency_key,
    submit,
)
from labelops.worker.ingest_messages import MAX_ID_LENGTH
from labelops.worker.openapi_document import JSON, RELAY_BATCH_MAX
from labelops.worker.problem_details import Problem

log = logging.getLogger(__name__)

Result = dict[str, Any]


def relay_blueprint(services: Services) -> Blueprint:
    relay = Blueprint("relay", __name__)

    @relay.post("/v1/relay/labels", endpoint="relayLabels")
    def relay_labels() -> Response:
        # hooks.py let only a service's credential through, with no labeler of its own.
        batch = relay_body()
        violations = services.spec.request_violations("relayLabels", batch)
        if violations:
            raise Problem(
                422,
                "invalid-request",
                f"send {{'submissions': [...]}} of 1 to {RELAY_BATCH_MAX} submissions, each "
                "with labeler, itemId, body and next; see errors",
                errors=violations,
            )
        submissions = batch["submissions"]
        # Leased through another process or replica: their payloads in one read, so that
        # they too go in the group commit (each would read its item alone otherwise).
        services.store.recall_leased(
            [(s["labeler"], s["itemId"]) for s in submissions if _plausible(s)]
        )
        work: list[Callable[[], Result]] = [_one(services, s) for s in submissions]
        return respond({"results": run_each(work)})

    return relay


def relay_body() -> Any:
    if request.mimetype != JSON:
        raise Problem(
            415,
            "unsupported-media-type",
            f"send the batch as JSON with 'Content-Type: {JSON}', "
            f"not {request.mimetype or 'no Content-Type'}",
        )
    try:
        return json.loads(request.get_data())
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise Problem(400, "invalid-json", f"the batch is not valid JSON: {err}") from None


def _plausible(submission: dict[str, Any]) -> bool:
    """Ids worth looking up (each is checked in full by its own work)."""
    return (
        0 < len(submission["labeler"]) <= LABELER_ID_MAX
        and 0 < len(submission["itemId"]) <= MAX_ID_LENGTH
    )


def _one(services: Services, submission: dict[str, Any]) -> Callable[[], Result]:
    """One submission's work, which answers with its result and never raises: it runs on a
    greenlet of its own, outside the request's Flask context (no flask.g, no request)."""

    def work() -> Result:
        try:
            try:
                labeler = submission["labeler"]
                problem = labeler_id_problem(labeler)
                if problem:
                    raise Problem(400, "invalid-request", f"labeler: {problem}")
                item_id = submission["itemId"]
                check_item_id(item_id)
                key = checked_idempotency_key(submission.get("idempotencyKey"))
                body = submission["body"]
                check_submission(services.spec, body)
            except Problem as err:
                services.meter.labels_rejected.labels(err.kind).inc()
                raise
            # submit() counts the store's refusals itself.
            receipt, status = submit(services, labeler, item_id, body, key, submission["next"])
            return {"status": status, "body": receipt}
        except Exception as err:  # each submission's refusal is its own
            found = store_problem(err, services.config)
            if found is None:
                log.exception("unhandled error in a relayed submission")
                found = Problem(
                    500, "internal-error", "unexpected error; the worker's log has the details"
                )
            return {"status": found.status, "body": found.body()}

    return work
