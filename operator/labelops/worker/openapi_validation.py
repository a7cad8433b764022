"""Holds the API to its OpenAPI document: every request body it reads and every response it
writes is checked against the document's schemas.

OpenAPI 3.1 schemas are JSON Schema 2020-12, so JSON Schema validators check them directly
once the document's `$ref`s are inlined.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator
from werkzeug.datastructures import Headers

from labelops.api.tasktypes import Violation
from labelops.worker.openapi_document import COMPONENT_REF, JSON, PROBLEM_JSON


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _pointer(path: Any) -> str:
    return "".join(f"/{_escape(str(part))}" for part in path)


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    spec: dict[str, Any]


class BodySchema:
    """One body schema with its `$ref`s inlined.

    jsonschema_rs answers "valid?" in about a microsecond, so validating every request and
    response costs next to nothing; only an invalid body goes through the Python validator,
    which names each failing field the way the label validator does. The Python verdict is
    the one that counts, so the two can never disagree in what the API answers.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self._explain = Draft202012Validator(schema)
        self._check = jsonschema_rs.validator_for(schema)

    def violations(self, instance: Any) -> list[Violation]:
        if self._check.is_valid(instance):
            return []
        return _violations(self._explain, instance)


class SpecValidator:
    """Validates bodies against the schemas of one OpenAPI document, by operationId."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.operations = {
            op["operationId"]: Operation(path, method, op)
            for path, item in document["paths"].items()
            for method, op in item.items()
        }
        self._components = document["components"]["schemas"]
        self._schemas: dict[tuple[str, ...], BodySchema] = {}
        for operation_id, operation in self.operations.items():
            body = operation.spec.get("requestBody", {}).get("content", {}).get(JSON)
            if body is not None:
                self._add((operation_id, "request"), body["schema"])
            for status, response in operation.spec["responses"].items():
                for media_type, content in response.get("content", {}).items():
                    if media_type in (JSON, PROBLEM_JSON):
                        self._add((operation_id, status, media_type), content["schema"])

    def _add(self, key: tuple[str, ...], schema: dict[str, Any]) -> None:
        self._schemas[key] = BodySchema(self._inline(schema))

    def _inline(self, node: Any) -> Any:
        """The schema with every reference to a component replaced by the component."""
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith(COMPONENT_REF):
                return self._inline(self._components[ref.removeprefix(COMPONENT_REF)])
            return {key: self._inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self._inline(value) for value in node]
        return node

    def request_violations(self, operation_id: str, body: Any) -> list[Violation]:
        return self._schemas[(operation_id, "request")].violations(body)

    def response_violations(
        self,
        operation_id: str,
        status: int,
        media_type: str,
        headers: Headers | Mapping[str, str],
        body: Any,
    ) -> list[str]:
        """Why a response does not match the document (empty when it does).

        Header names are looked up as the document spells them: werkzeug's Headers matches
        them case-insensitively.
        """
        responses = self.operations[operation_id].spec["responses"]
        declared = responses.get(str(status))
        if declared is None:
            return [f"status {status} is not documented for {operation_id}"]
        problems = [
            f"header {name} is missing"
            for name, header in declared.get("headers", {}).items()
            if header.get("required") and name not in headers
        ]
        content = declared.get("content")
        if content is None:
            return problems
        if media_type not in content:
            return [*problems, f"media type {media_type!r} is not one of {sorted(content)}"]
        schema = self._schemas.get((operation_id, str(status), media_type))
        if schema is None:  # text/plain, text/html: the media type is all there is to check
            return problems
        return problems + [f"{v.pointer or '(body)'}: {v.message}" for v in schema.violations(body)]


def _violations(validator: Draft202012Validator, instance: Any) -> list[Violation]:
    found = []
    for error in validator.iter_errors(instance):
        path = list(error.absolute_path)
        # Point at the missing or unexpected member itself, not at the object holding it.
        if isinstance(error.instance, dict):
            if error.validator == "required":
                path += [k for k in error.validator_value if k not in error.instance][:1]
            elif error.validator == "additionalProperties":
                allowed = set(error.schema.get("properties", {}))
                path += sorted(k for k in error.instance if k not in allowed)[:1]
        found.append(Violation(_pointer(path), error.message))
    return sorted(found, key=lambda v: v.pointer)
