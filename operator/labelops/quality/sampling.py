"""Reproducible random sampling of audits and gold turns, from a keyed hash of their inputs.

Method: a keyed hash mapped to a uniform number in [0, 1), compared with the rate. An item is
an audit for a model version, or a labeler's n-th claim is a gold turn, when

    u = int(md5(DOMAIN + "\\x1f" + a + "\\x1f" + b).hexdigest()[:13], 16) / 2**52  <  rate

with DOMAIN "labelops/audit" (a = item id, b = model version) or "labelops/gold" (a = labeler,
b = the claim number in decimal), all UTF-8. MD5 is used as a well-mixed, fixed function, not
for security: nothing here is secret, and it is the digest PostgreSQL has built in, so the
store can take the same decision in SQL (`audit_hash_sql`, `gold_hash_sql`). The first 52 bits
are exactly representable in a double, so Python and `float8` give the same number bit for bit.

Why hashing, not a random generator: the decision must be the same in every process, after a
restart and in SQL, independent of PYTHONHASHSEED and of the order items arrive in; and an
item's audit decision is fixed per (item, version), so a new model version draws new audits.
The domain separates the two uses, so being an audit says nothing about being a gold turn.
"""

from __future__ import annotations

import hashlib

AUDIT_DOMAIN = "labelops/audit"
GOLD_DOMAIN = "labelops/gold"
SEPARATOR = "\x1f"  # ASCII unit separator: not expected inside ids
_BITS = 52
_HEX_DIGITS = _BITS // 4
_SCALE = float(2**_BITS)


def unit_hash(domain: str, first: str, second: str) -> float:
    """The uniform number in [0, 1) for these inputs (see the module docstring for the formula)."""
    data = f"{domain}{SEPARATOR}{first}{SEPARATOR}{second}".encode()
    digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
    return int(digest[:_HEX_DIGITS], 16) / _SCALE


def _check_rate(rate: float) -> None:
    if not (isinstance(rate, int | float) and 0.0 <= rate <= 1.0):
        raise ValueError(f"rate={rate!r}: must be in [0, 1]")


def is_audit(item_id: str, model_version: str, rate: float) -> bool:
    """Whether this scored item goes to people as an audit of this model version."""
    _check_rate(rate)
    return unit_hash(AUDIT_DOMAIN, item_id, model_version) < rate


def is_gold_turn(labeler: str, claim_number: int, rate: float, onboarding: int) -> bool:
    """Whether the labeler's `claim_number`-th claim (counting from 1) is served a gold item.

    The first `onboarding` claims always are; after them, a share `rate` at random.
    """
    _check_rate(rate)
    if isinstance(claim_number, bool) or not isinstance(claim_number, int) or claim_number < 1:
        raise ValueError(
            f"claim_number={claim_number!r}: must be an integer >= 1 (first claim is 1)"
        )
    if isinstance(onboarding, bool) or not isinstance(onboarding, int) or onboarding < 0:
        raise ValueError(f"onboarding={onboarding!r}: must be an integer >= 0")
    if claim_number <= onboarding:
        return True
    return unit_hash(GOLD_DOMAIN, labeler, str(claim_number)) < rate


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def hash_sql(domain: str, first_sql: str, second_sql: str) -> str:
    """A PostgreSQL float8 expression equal to `unit_hash(domain, first, second)`, where
    `first_sql` and `second_sql` are SQL expressions of type text (cast them if needed)."""
    key = f"{_sql_literal(domain)} || chr(31) || ({first_sql}) || chr(31) || ({second_sql})"
    return (
        f"(('x' || substr(md5({key}), 1, {_HEX_DIGITS}))::bit({_BITS})::bigint::float8"
        f" / {int(_SCALE)}::float8)"
    )


def audit_hash_sql(item_id_sql: str = "item_id", model_version_sql: str = "model_version") -> str:
    """SQL computing `unit_hash(AUDIT_DOMAIN, item_id, model_version)`: compare it `< rate`."""
    return hash_sql(AUDIT_DOMAIN, item_id_sql, model_version_sql)


def gold_hash_sql(labeler_sql: str = "labeler", claim_number_sql: str = "claim_number") -> str:
    """SQL computing `unit_hash(GOLD_DOMAIN, labeler, claim_number)` (the number as decimal
    text); the onboarding rule (`claim_number <= onboarding`) is the caller's `OR`."""
    return hash_sql(GOLD_DOMAIN, labeler_sql, f"({claim_number_sql})::text")
