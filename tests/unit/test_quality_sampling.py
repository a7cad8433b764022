"""Audit and gold sampling: reproducible, uniform, and the same number in SQL."""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
import sys

import pytest
from scipy.stats import binom, kstest

from labelops.quality.sampling import (
    AUDIT_DOMAIN,
    GOLD_DOMAIN,
    audit_hash_sql,
    gold_hash_sql,
    is_audit,
    is_gold_turn,
    unit_hash,
)


def test_documented_formula():
    data = b"labelops/audit\x1fitem-1\x1fv1"
    expected = int(hashlib.md5(data).hexdigest()[:13], 16) / 2**52
    assert unit_hash(AUDIT_DOMAIN, "item-1", "v1") == expected
    assert 0.0 <= expected < 1.0


def test_same_decision_in_another_process_with_another_hash_seed():
    ids = [f"item-{i}" for i in range(200)]
    here = [is_audit(i, "v7", 0.3) for i in ids]
    code = (
        "from labelops.quality.sampling import is_audit;"
        "print(''.join('1' if is_audit(f'item-{i}', 'v7', 0.3) else '0' for i in range(200)))"
    )
    for seed in ("0", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert out == "".join("1" if x else "0" for x in here)


@pytest.mark.parametrize("rate", [0.05, 0.5])
def test_empirical_audit_rate_within_a_binomial_bound(rate):
    n = 100_000
    hits = sum(is_audit(f"item-{i}", "model-v1", rate) for i in range(n))
    # Two-sided 99.9% binomial acceptance region: fails with probability 1e-3 if uniform.
    low, high = binom.interval(0.999, n, rate)
    assert low <= hits <= high


def test_hash_is_uniform():
    values = [unit_hash(AUDIT_DOMAIN, str(i), "v") for i in range(20_000)]
    assert kstest(values, "uniform").pvalue > 1e-3


def test_decisions_are_nested_in_the_rate_and_new_per_version():
    ids = [f"i{i}" for i in range(5000)]
    low = {i for i in ids if is_audit(i, "v1", 0.05)}
    high = {i for i in ids if is_audit(i, "v1", 0.2)}
    assert low <= high
    other = {i for i in ids if is_audit(i, "v2", 0.2)}
    # Independent draws per version: the overlap is near 0.2 * 0.2 of the items, not 0.2.
    assert len(high & other) < 0.08 * len(ids)


def test_rate_zero_and_one():
    assert not any(is_audit(f"i{i}", "v", 0.0) for i in range(10_000))
    assert all(is_audit(f"i{i}", "v", 1.0) for i in range(1_000))
    assert not any(is_gold_turn("ann", c, 0.0, 0) for c in range(1, 10_000))


def test_onboarding_claims_are_gold_then_the_rate():
    assert all(is_gold_turn("ann", c, 0.0, 5) for c in range(1, 6))
    assert not is_gold_turn("ann", 6, 0.0, 5)
    n = 100_000
    hits = sum(is_gold_turn("bob", c, 0.1, 5) for c in range(6, 6 + n))
    low, high = binom.interval(0.999, n, 0.1)
    assert low <= hits <= high
    # Gold turns of one labeler say nothing about another's.
    ann = [is_gold_turn("ann", c, 0.5, 0) for c in range(1, 2001)]
    bob = [is_gold_turn("bob", c, 0.5, 0) for c in range(1, 2001)]
    assert 800 < sum(a == b for a, b in zip(ann, bob, strict=True)) < 1200


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"rate=1\.5"):
        is_audit("i", "v", 1.5)
    with pytest.raises(ValueError, match="rate=nan"):
        is_audit("i", "v", math.nan)
    with pytest.raises(ValueError, match="claim_number=0"):
        is_gold_turn("ann", 0, 0.1, 5)
    with pytest.raises(ValueError, match="onboarding=-1"):
        is_gold_turn("ann", 1, 0.1, -1)


def _evaluate_sql(expr: str, values: dict[str, str]) -> float:
    """Evaluate the expression the way PostgreSQL defines each step, for the shapes we emit:
    md5(text) is the lowercase hex digest of the UTF-8 bytes; substr(s, 1, 13) the first 13
    characters; ('x' || hex)::bit(52) the 52-bit string; ::bigint its unsigned value;
    ::float8 / 2^52 the division. The integration test runs the same on a real server."""
    m = re.fullmatch(
        r"\(\('x' \|\| substr\(md5\('([^']*)' \|\| chr\(31\) \|\| \((.+?)\) \|\| chr\(31\) "
        r"\|\| \((.+)\)\), 1, 13\)\)::bit\(52\)::bigint::float8 / 4503599627370496::float8\)",
        expr,
    )
    assert m, expr
    domain, first, second = m.groups()
    second = re.sub(r"^\((.+)\)::text$", r"\1", second)
    text = domain + chr(31) + values[first] + chr(31) + values[second]
    hex13 = hashlib.md5(text.encode()).hexdigest()[:13]
    return float(int(hex13, 16)) / float(4503599627370496)


def test_sql_expressions_mirror_the_python_hash():
    for i in range(500):
        item, version = f"item-{i}", f"v{i % 7}"
        sql = audit_hash_sql("item_id", "model_version")
        got = _evaluate_sql(sql, {"item_id": item, "model_version": version})
        assert got == unit_hash(AUDIT_DOMAIN, item, version)
        sql = gold_hash_sql("labeler", "claim_number")
        got = _evaluate_sql(sql, {"labeler": f"user{i}", "claim_number": str(i + 1)})
        assert got == unit_hash(GOLD_DOMAIN, f"user{i}", str(i + 1))


def test_sql_quotes_the_domain():
    from labelops.quality.sampling import hash_sql

    assert "'it''s'" in hash_sql("it's", "a", "b")
