"""The tasks blueprint: a labeler claims a task, submits its label (optionally leasing the
next task in the same transaction, `?next=true`) or releases it.

Request parts are checked here before the store sees them; each refusal names the part, the
value's problem and what is allowed.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, g, request

from labelops.store import ClaimedTask
from labelops.store.errors import QuotaExceeded, StoreError
from labelops.store.storable_json import MAX_DEPTH
from labelops.worker.http import json_bodies
from labelops.worker.http.services import Services, respond
from labelops.worker.ingest_messages import MAX_ID_LENGTH
from labelops.worker.openapi_document import IDEMPOTENCY_KEY_MAX, JSON
from labelops.worker.openapi_validation import SpecValidator
from labelops.worker.problem_details import Problem

IDEMPOTENCY_HEADER = "Idempotency-Key"
NEXT_PARAMETER = "next"
# A paused campaign's workers keep running (ingest, relay, submissions of held leases); only
# new leases are refused, with a reason a labeler's client can show.
PAUSED = Problem(
    409,
    "campaign-paused",
    "the campaign is paused (spec.paused is true): no new tasks are leased; labels for tasks "
    "you already hold are still accepted. Claim again once spec.paused is false",
)


def tasks_blueprint(services: Services) -> Blueprint:
    tasks = Blueprint("tasks", __name__)
    store = services.store
    meter = services.meter

    @tasks.post("/v1/tasks/claim", endpoint="claimTask")
    def claim_task() -> Response:
        if store.config.paused:
            meter.claims.labels("refused").inc()
            raise PAUSED
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

    @tasks.post("/v1/tasks/<item_id:item_id>/labels", endpoint="submitLabel")
    def submit_label(item_id: str) -> Response:
        try:
            check_item_id(item_id)
            key = checked_idempotency_key(request.headers.get(IDEMPOTENCY_HEADER))
            with_next = next_requested()
            body = submission_body(services.spec)
        except Problem as err:
            meter.labels_rejected.labels(err.kind).inc()
            raise
        receipt, status = submit(services, g.labeler, item_id, body, key, with_next)
        return respond(receipt, status)

    @tasks.post("/v1/tasks/<item_id:item_id>/release", endpoint="releaseTask")
    def release_task(item_id: str) -> Response:
        check_item_id(item_id)
        if not store.release(g.labeler, item_id):
            raise Problem(
                409,
                "not-leased",
                f"you hold no lease on item {item_id!r}: claim it first (POST /v1/tasks/claim)",
            )
        return respond({"itemId": item_id, "released": True})

    return tasks


def submission_body(spec: SpecValidator) -> Any:
    if not request.mimetype or not (request.mimetype == JSON or request.mimetype.endswith("+json")):
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
    except RecursionError:
        # Python's parser recurses per bracket: refused here, never a 500.
        raise Problem(
            400,
            "invalid-json",
            f"the body nests too deeply to be parsed; labels nest at most {MAX_DEPTH} levels",
        ) from None
    check_submission(spec, body)
    return body


def check_submission(spec: SpecValidator, body: Any) -> None:
    """A parsed submission body against the document's LabelSubmission: 422 naming each field."""
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


def submit(
    services: Services,
    labeler: str,
    item_id: str,
    body: Any,
    key: str | None,
    with_next: bool,
) -> tuple[dict[str, Any], int]:
    """A checked submission to the store: its receipt (with `next` when with_next) and status
    (201, or 200 for a replay); a refusal raises (Problem or StoreError), counted."""
    store, meter = services.store, services.meter
    upcoming: ClaimedTask | QuotaExceeded | None = None
    try:
        if with_next:
            # The label and the next lease commit together (one round trip).
            result, upcoming = store.submit_and_claim(
                labeler, item_id, body["value"], idempotency_key=key
            )
        else:
            result = store.submit(labeler, item_id, body["value"], idempotency_key=key)
    except (Problem, StoreError) as err:
        meter.labels_rejected.labels(_rejection_reason(err)).inc()
        raise
    if not result.replayed:
        meter.labels_accepted.inc()
    receipt = json_bodies.receipt(result)
    if with_next:
        meter.claims.labels(_claim_outcome(upcoming)).inc()
        # A quota that refused the next lease is the labeler's next claim's to explain.
        if isinstance(upcoming, ClaimedTask):
            receipt["next"] = json_bodies.task(upcoming)
        else:
            receipt["next"] = None
    return receipt, 200 if result.replayed else 201


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


def checked_idempotency_key(key: str | None) -> str | None:
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


def _claim_outcome(upcoming: ClaimedTask | QuotaExceeded | None) -> str:
    if isinstance(upcoming, ClaimedTask):
        return "leased"
    return "refused" if isinstance(upcoming, QuotaExceeded) else "empty"


def _rejection_reason(err: Problem | StoreError) -> str:
    return err.kind if isinstance(err, Problem) else err.reason.replace("_", "-")
