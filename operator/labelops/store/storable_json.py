"""JSON the store refuses to keep.

jsonb refuses the NUL character (\\u0000) anywhere in a string or key, and very deep
nesting breaks serialisers on the way (Python's json recurses). Finding both before the
INSERT turns a crash or a database error (a 500, or a stuck ingest batch) into a refusal
that names the field.
"""

from __future__ import annotations

from typing import Any

from labelops.api.tasktypes import Violation

_NUL = "\x00"
# Far deeper than any payload or label needs, far below Python's recursion limit.
MAX_DEPTH = 64


def storage_violations(value: Any, pointer: str) -> list[Violation]:
    """Violations for every string or key under `value` that contains NUL, and for
    nesting deeper than MAX_DEPTH."""
    message = "contains the NUL character (\\u0000), which cannot be stored"
    found: list[Violation] = []
    # An explicit stack, not recursion: the check itself must survive any nesting.
    pending: list[tuple[Any, str, int]] = [(value, pointer, 0)]
    while pending:
        node, where, depth = pending.pop()
        if depth > MAX_DEPTH:
            found.append(Violation(where, f"nests deeper than {MAX_DEPTH} levels"))
            continue
        if isinstance(node, str):
            if _NUL in node:
                found.append(Violation(where or "/", message))
        elif isinstance(node, dict):
            for key, child in node.items():
                child_pointer = f"{where}/{_escape(str(key))}"
                if _NUL in str(key):
                    found.append(Violation(child_pointer, f"key {message}"))
                pending.append((child, child_pointer, depth + 1))
        elif isinstance(node, list):
            pending.extend(
                (child, f"{where}/{index}", depth + 1) for index, child in enumerate(node)
            )
    return sorted(found, key=lambda v: v.pointer)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
