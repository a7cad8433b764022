"""The worker's OpenAPI 3.1 document, built from the campaign.

The document is generated per campaign because the label value schema depends on the task
(`label_schema(task)`, plus the campaign's own `labelSchema`): a client reading
`/openapi.json` sees exactly what this campaign accepts. openapi_validation.py holds the API to it.
"""

from __future__ import annotations

from typing import Any

from labelops.api.pool_router import ON_BEHALF_OF_HEADER as ON_BEHALF_OF
from labelops.api.tasktypes import PAYLOAD_SCHEMAS, label_schema
from labelops.api.worker_configmap import WorkerConfig
from labelops.worker.ingest_messages import MAX_ID_LENGTH

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
COMPONENT_REF = "#/components/schemas/"
CAMPAIGN_SCHEMA_ID = "urn:labelops:campaign-label-schema"
API_VERSION = "1.0.0"
IDEMPOTENCY_KEY_MAX = 200
# Submissions in one POST /v1/relay/labels (the pool router's batches).
RELAY_BATCH_MAX = 64
# An operation only a service (the pool's router) may call, naming its labelers itself.
SERVICE_ONLY = "x-labelops-service-only"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": COMPONENT_REF + name}


def _obj(required: list[str], properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
        **extra,
    }


_STRING = {"type": "string"}
_COUNT = {"type": "integer", "minimum": 0}
_TIME = {"type": "string", "format": "date-time"}


def _schemas(config: WorkerConfig) -> dict[str, Any]:
    task = config.task
    builtin = label_schema(task)
    label_value = builtin
    if task.label_schema is not None:
        # An $id makes the campaign schema's own "#/..." references resolve inside it, not
        # against this document.
        custom = {"$id": CAMPAIGN_SCHEMA_ID, **task.label_schema}
        label_value = {"allOf": [builtin, custom]}
    campaign_task = {
        "type": {"type": "string", "enum": [task.type.value]},
        "instructions": _STRING,
        "choices": {"type": "array", "items": _STRING},
        "multiple": {"type": "boolean"},
        "scale": _obj(["min", "max"], {"min": {"type": "integer"}, "max": {"type": "integer"}}),
        "minLength": _COUNT,
        "maxLength": _COUNT,
    }
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details; `errors` points at each failing field.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string", "format": "uri"},
                "title": _STRING,
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": _STRING,
                "errors": {"type": "array", "items": _ref("FieldError")},
                "reason": {"type": "string", "description": "Machine-readable cause."},
                "retryAfter": {"type": "integer", "minimum": 0},
                "checks": {"type": "object", "additionalProperties": _STRING},
                "missingSkills": {
                    "type": "array",
                    "items": _STRING,
                    "description": "The required skills the labeler lacks (403).",
                },
            },
            "additionalProperties": False,
        },
        "FieldError": _obj(
            ["pointer", "message"],
            {
                "pointer": {
                    "type": "string",
                    "description": "JSON Pointer (RFC 6901) into the request body.",
                },
                "message": _STRING,
            },
        ),
        "ItemPayload": PAYLOAD_SCHEMAS[task.type],
        "LabelValue": {
            **label_value,
            "description": (
                f"A {task.type.value} label. Beyond this schema, a pairwise `preferred` must "
                "be one of the item's response ids or 'tie', and a ranking `order` a "
                "permutation of all of them."
            ),
        },
        "LabelSubmission": _obj(["value"], {"value": _ref("LabelValue")}),
        "Task": _obj(
            ["id", "payload", "priority", "leaseExpiresAt"],
            {
                "id": {"type": "string", "minLength": 1, "description": "External item id."},
                "payload": _ref("ItemPayload"),
                "priority": {"type": "integer"},
                "leaseExpiresAt": _TIME,
            },
        ),
        "LabelReceipt": _obj(
            ["labelId", "itemId", "labeler", "createdAt", "replayed", "itemCompleted"],
            {
                "labelId": _STRING,
                "itemId": _STRING,
                "labeler": _STRING,
                "createdAt": _TIME,
                "replayed": {
                    "type": "boolean",
                    "description": "True when this answers a retry with a known Idempotency-Key.",
                },
                "itemCompleted": {
                    "type": "boolean",
                    "description": "True when this label was the item's last one.",
                },
                "next": {
                    "description": (
                        "Only with ?next=true: the labeler's next task, leased as by "
                        "POST /v1/tasks/claim in the same transaction as the label, or null "
                        "when none was leased (nothing left, or a quota: POST "
                        "/v1/tasks/claim says which)."
                    ),
                    "oneOf": [_ref("Task"), {"type": "null"}],
                },
            },
        ),
        "RelayedSubmission": _obj(
            ["labeler", "itemId", "body", "next"],
            {
                "labeler": {**_STRING, "description": "The labeler the router signed in."},
                "itemId": {**_STRING, "description": "The item's external id."},
                "body": {"description": "The labeler's body, checked as a LabelSubmission."},
                "idempotencyKey": {**_STRING, "description": "The labeler's Idempotency-Key."},
                "next": {"type": "boolean", "description": "As ?next of submitLabel."},
            },
        ),
        "RelayBatch": _obj(
            ["submissions"],
            {
                "submissions": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": RELAY_BATCH_MAX,
                    "items": _ref("RelayedSubmission"),
                }
            },
        ),
        "RelayResult": _obj(
            ["status", "body"],
            {
                "status": {"type": "integer", "minimum": 200, "maximum": 599},
                "body": {"oneOf": [_ref("LabelReceipt"), _ref("Problem")]},
            },
        ),
        "RelayResults": _obj(
            ["results"],
            {
                "results": {
                    "type": "array",
                    "items": _ref("RelayResult"),
                    "description": "One per submission, in their order.",
                }
            },
        ),
        "Release": _obj(["itemId", "released"], {"itemId": _STRING, "released": {"const": True}}),
        "Me": _obj(
            [
                "labeler",
                "labelsToday",
                "labelsTotal",
                "dailyQuota",
                "dailyLeft",
                "activeLeases",
                "maxLeases",
                "quotaResetsAt",
            ],
            {
                "labeler": _STRING,
                "labelsToday": _COUNT,
                "labelsTotal": _COUNT,
                "dailyQuota": _COUNT,
                "dailyLeft": {**_COUNT, "description": "Labels this labeler may still add today."},
                "activeLeases": _COUNT,
                "maxLeases": _COUNT,
                "quotaResetsAt": {**_TIME, "description": "Next UTC midnight."},
            },
        ),
        "Progress": _obj(
            [
                "itemsTotal",
                "itemsCompleted",
                "itemsTarget",
                "labels",
                "labelsTarget",
                "percent",
                "humanLabeled",
                "machineLabeled",
                "rejected",
                "deadLettered",
            ],
            {
                "itemsTotal": {**_COUNT, "description": "Distinct items ingested."},
                "itemsCompleted": {**_COUNT, "description": "Items holding labelsPerItem labels."},
                "itemsTarget": _COUNT,
                "labels": {**_COUNT, "description": "Accepted labels."},
                "labelsTarget": {**_COUNT, "description": "target.items x labelsPerItem."},
                "percent": {"type": "number", "minimum": 0, "maximum": 100},
                "humanLabeled": _COUNT,
                "machineLabeled": _COUNT,
                "rejected": {**_COUNT, "description": "Submissions refused by validation."},
                "deadLettered": {
                    **_COUNT,
                    "description": "Item messages that could not be ingested.",
                },
            },
        ),
        "Campaign": _obj(
            ["namespace", "name", "task", "target", "quotas", "paused"],
            {
                "namespace": _STRING,
                "name": _STRING,
                "task": _obj(["type", "instructions", "multiple"], campaign_task),
                "target": _obj(
                    ["items", "labelsPerItem"], {"items": _COUNT, "labelsPerItem": _COUNT}
                ),
                "quotas": _obj(
                    ["perLabelerDaily", "maxLeasesPerLabeler", "leaseSeconds"],
                    {
                        "perLabelerDaily": _COUNT,
                        "maxLeasesPerLabeler": _COUNT,
                        "leaseSeconds": _COUNT,
                    },
                ),
                "paused": {"type": "boolean"},
            },
        ),
        "Health": _obj(["status"], {"status": {"const": "ok"}}),
        "Readiness": _obj(
            ["status", "checks"],
            {
                "status": {"const": "ready"},
                "checks": {"type": "object", "additionalProperties": _STRING},
            },
        ),
    }


def _problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
    }
    if headers:
        response["headers"] = headers
    return response


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(schema)}}}


_UNAUTHORIZED = _problem(
    "Missing, malformed or unknown bearer token, or an OIDC token refused (expired, wrong "
    "audience, unknown key...: `reason` says which).",
    {"WWW-Authenticate": {"required": True, "schema": _STRING}},
)
_ON_BEHALF_OF_REFUSED = (
    f"The {ON_BEHALF_OF} header is missing from a service's (the pool router's) request, "
    "malformed, or sent with a labeler's own credentials."
)
_MISSING_SKILLS = (
    "The labeler lacks a skill this campaign requires of its pool's labelers; "
    "`missingSkills` names them."
)
_BLOCKED = _problem(
    "The labeler is blocked in this campaign (spec.labelers.blocked, or gold accuracy below "
    "quality.gold.minAccuracy; the detail names the rule and the figures), or lacks a skill "
    "the campaign requires (`missingSkills`)."
)
_RETRY_AFTER = {
    "Retry-After": {
        "required": True,
        "description": "Seconds until the quota allows another call.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
_ITEM_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": (
        "The item's external id, percent-encoded: '/' as %2F, and the dots of an id that is "
        "'.' or '..' as %2E, or clients resolve it as a relative path."
    ),
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_ID_LENGTH,
    },
}


_SHUTTING_DOWN = _problem(
    "This worker is shutting down (retry, another replica answers) or the campaign's database "
    "is unavailable (retry after Retry-After seconds; a submission with its Idempotency-Key).",
    {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
)


def _paths() -> dict[str, Any]:
    authed: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "/v1/campaign": {
            "get": {
                "operationId": "getCampaign",
                "summary": "The campaign's task, instructions, target and quotas.",
                "security": authed,
                "responses": {"200": _json("The campaign.", "Campaign"), "401": _UNAUTHORIZED},
            }
        },
        "/v1/tasks/claim": {
            "post": {
                "operationId": "claimTask",
                "summary": "Lease the next task for this labeler.",
                "description": (
                    "Never an item this labeler already labeled; higher priority first. The "
                    "lease ends at leaseExpiresAt, when the task returns to the pool."
                ),
                "security": authed,
                "responses": {
                    "200": {
                        **_json("A leased task.", "Task"),
                        "links": {
                            "SubmitLabel": {
                                "operationId": "submitLabel",
                                "parameters": {"id": "$response.body#/id"},
                            },
                            "ReleaseTask": {
                                "operationId": "releaseTask",
                                "parameters": {"id": "$response.body#/id"},
                            },
                        },
                    },
                    "204": {
                        "description": (
                            "Nothing to label right now (or target.items items are complete)."
                        )
                    },
                    "401": _UNAUTHORIZED,
                    "403": _BLOCKED,
                    "409": _problem("The campaign is paused (spec.paused): no new leases."),
                    "429": _problem(
                        "The labeler holds maxLeasesPerLabeler leases or used the daily quota.",
                        _RETRY_AFTER,
                    ),
                },
            }
        },
        "/v1/tasks/{id}/labels": {
            "post": {
                "operationId": "submitLabel",
                "summary": "Submit this labeler's label for an item.",
                "security": authed,
                "parameters": [
                    _ITEM_ID,
                    {
                        "name": "next",
                        "in": "query",
                        "required": False,
                        "description": (
                            "true: also lease this labeler's next task and return it in the "
                            "receipt as `next`, saving a claim request per label."
                        ),
                        "schema": {"type": "boolean", "default": False},
                    },
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "A retry with the same key returns the original result.",
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": IDEMPOTENCY_KEY_MAX,
                            "pattern": "^[\\x21-\\x7e]+$",
                        },
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("LabelSubmission")}},
                },
                "responses": {
                    "201": _json("The label was accepted.", "LabelReceipt"),
                    "200": _json("A replay: the original result for this key.", "LabelReceipt"),
                    "400": _problem(
                        "The body is not JSON, a header or `next` is malformed or the item id "
                        "impossible."
                    ),
                    "401": _UNAUTHORIZED,
                    "403": _BLOCKED,
                    "404": _problem("No item with this id."),
                    "409": _problem(
                        "The item has all its labels, or this labeler already labeled it."
                    ),
                    "413": _problem("The body is larger than 1 MiB."),
                    "415": _problem("The body is not application/json."),
                    "422": _problem("The label does not fit; errors[] names each field."),
                    "429": _problem("The labeler used the daily quota.", _RETRY_AFTER),
                },
            }
        },
        "/v1/relay/labels": {
            "post": {
                "operationId": "relayLabels",
                "summary": "The pool router's: many labelers' submissions in one request.",
                "description": (
                    "Each submission is checked, stored and answered as submitLabel would "
                    "(its status and its receipt or problem, in `results`, in order); those of "
                    "one batch commit together. Only the pool router's service token may call "
                    "it; it names each submission's labeler."
                ),
                "security": authed,
                SERVICE_ONLY: True,
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("RelayBatch")}},
                },
                "responses": {
                    "200": _json("Each submission's result, in order.", "RelayResults"),
                    "400": _problem("The body is not JSON."),
                    "401": _UNAUTHORIZED,
                    "403": _problem("The credential is not the pool router's."),
                    "413": _problem("The body is larger than 1 MiB."),
                    "415": _problem("The body is not application/json."),
                    "422": _problem("The body is not a batch of submissions; errors[] says why."),
                },
            }
        },
        "/v1/tasks/{id}/release": {
            "post": {
                "operationId": "releaseTask",
                "summary": "Skip: give a leased task back to the pool.",
                "security": authed,
                "parameters": [_ITEM_ID],
                "responses": {
                    "200": _json("The lease is released.", "Release"),
                    "400": _problem("The item id is longer than any item's or holds NUL."),
                    "401": _UNAUTHORIZED,
                    "404": _problem("No item with this id."),
                    "409": _problem("This labeler holds no lease on this item."),
                },
            }
        },
        "/v1/me": {
            "get": {
                "operationId": "getMe",
                "summary": "This labeler's counts and quota left.",
                "security": authed,
                "responses": {"200": _json("Counts.", "Me"), "401": _UNAUTHORIZED},
            }
        },
        "/v1/progress": {
            "get": {
                "operationId": "getProgress",
                "summary": "The campaign's progress.",
                "security": authed,
                "responses": {"200": _json("Progress.", "Progress"), "401": _UNAUTHORIZED},
            }
        },
        "/healthz": {
            "get": {
                "operationId": "getHealth",
                "summary": "Liveness: the process serves HTTP.",
                "security": [],
                "responses": {"200": _json("Alive.", "Health")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "getReadiness",
                "summary": "Readiness: the database and Kafka answer (cached ~2 s).",
                "security": [],
                "responses": {
                    "200": _json("Ready.", "Readiness"),
                    "503": _problem("A dependency is unreachable; checks{} says which."),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "getMetrics",
                "summary": "Prometheus metrics.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Text exposition format.",
                        "content": {"text/plain": {"schema": _STRING}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenapi",
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/": {
            "get": {
                "operationId": "getLabelingPage",
                "summary": "The labeling page for humans.",
                "security": [],
                "responses": {
                    "200": {"description": "HTML.", "content": {"text/html": {"schema": _STRING}}}
                },
            }
        },
    }


def _with_shutdown_responses(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation may meet a worker that is draining (see server.py); every one with
    security may refuse the on-behalf-of header (400) or a labeler lacking a skill (403)."""
    for item in paths.values():
        for operation in item.values():
            responses = operation["responses"]
            responses.setdefault("503", _SHUTTING_DOWN)
            if not operation.get("security") or operation.get(SERVICE_ONLY):
                continue
            if "400" in responses:
                responses["400"] = {
                    **responses["400"],
                    "description": f"{responses['400']['description']} Or: {_ON_BEHALF_OF_REFUSED}",
                }
            else:
                responses["400"] = _problem(_ON_BEHALF_OF_REFUSED)
            responses.setdefault("403", _problem(_MISSING_SKILLS))
    return paths


def build_document(config: WorkerConfig) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"labelops worker: {config.namespace}/{config.name}",
            "version": API_VERSION,
            "description": (
                f"Labeling API of the {config.task.type.value} campaign "
                f"{config.namespace}/{config.name}. Authenticate with "
                "'Authorization: Bearer <labeler token>'. Errors are RFC 9457 problem details."
            ),
        },
        "paths": _with_shutdown_responses(_paths()),
        "components": {
            "schemas": _schemas(config),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "A labeler's token, or (a LabelerPool's campaign) a JWT of the "
                        "pool's OIDC issuer, or the pool router's service token: a request "
                        f"with that one names the labeler it acts for in the {ON_BEHALF_OF} "
                        "header, which nobody else may send."
                    ),
                }
            },
        },
    }
