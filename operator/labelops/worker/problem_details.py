"""Errors as RFC 9457 problem details: what was wrong, and what is allowed instead.

Every refusal the API makes is a `Problem`; the app turns it into an
`application/problem+json` response. `type` is a stable URI per kind of problem, so clients
branch on it rather than on the wording of `detail`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from flask import Response

from labelops.api.tasktypes import Violation

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://labelops.dev/problems/"

TITLES = {
    "invalid-request": "The request does not match the API",
    "invalid-json": "The request body is not valid JSON",
    "unsupported-media-type": "Unsupported media type",
    "invalid-label": "The label does not fit the campaign's label schema",
    "unauthorized": "Authentication required",
    "forbidden": "Not allowed with this credential",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "item-full": "The item already has all the labels it needs",
    "already-labeled": "You already labeled this item",
    "not-leased": "You hold no lease on this item",
    "lease-required": "Claim the item before labeling it",
    "lease-expired": "Your lease on this item expired",
    "idempotency-key-reused": "The Idempotency-Key was used for a different label",
    "payload-too-large": "The request body is too large",
    "quota-exceeded": "Quota exceeded",
    "not-ready": "The worker is not ready",
    "shutting-down": "The worker is shutting down",
    "database-unavailable": "The campaign's database is unavailable",
    "internal-error": "Internal error",
}


class Problem(Exception):
    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        errors: Sequence[Violation] = (),
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})

    def body(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.kind,
            "title": TITLES.get(self.kind) or HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }
        if self.errors:
            doc["errors"] = [v.as_dict() for v in self.errors]
        return doc

    def response(self) -> Response:
        return Response(
            json.dumps(self.body()),
            status=self.status,
            headers=self.headers,
            mimetype=PROBLEM_MEDIA_TYPE,
        )
