"""A campaign worker's answer to a request the router forwarded, relayed to the labeler."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://labelops.dev/problems/"


@dataclass
class Upstream:
    """A worker's answer, or None for the status when it could not be reached."""

    status: int | None
    body: bytes = b""
    content_type: str = ""
    headers: Mapping[str, str] | None = None
    error: str = ""
    # The body parsed, when it came so (a relayed batch's result): body is then b"".
    document: Any = None

    def parsed(self) -> Any:
        return self.document if self.document is not None else orjson.loads(self.body)

    def relayed(self) -> web.Response:
        headers = {}
        if self.headers is not None and "Retry-After" in self.headers:
            headers["Retry-After"] = self.headers["Retry-After"]
        assert self.status is not None
        if self.status == 204:
            return web.Response(status=204, headers=headers)
        body = self.body
        if not body and self.document is not None:
            body = orjson.dumps(self.document)
        return web.Response(
            body=body,
            status=self.status,
            headers={**headers, "Content-Type": self.content_type or JSON},
        )

    def problem_kind(self) -> str:
        if self.content_type.startswith(PROBLEM_JSON):
            try:
                kind = self.parsed().get("type", "")
            except (orjson.JSONDecodeError, AttributeError):
                return ""
            return str(kind).removeprefix(PROBLEM_TYPE_BASE)
        return ""
