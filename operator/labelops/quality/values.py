"""A fixed total order over label values of mixed types, so every tie is broken the same way
in every process (numbers, then booleans, then strings, then anything else by its repr)."""

from __future__ import annotations

from collections.abc import Hashable


def order_key(value: Hashable) -> tuple[int, object]:
    """Sort key: numbers ascending, then False < True, then strings, then by repr."""
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        return (2, value)
    return (3, repr(value))
