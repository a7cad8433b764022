"""The SQL forms of the sampling hash equal the Python ones, on the real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from labelops.quality.sampling import (
    AUDIT_DOMAIN,
    GOLD_DOMAIN,
    audit_hash_sql,
    gold_hash_sql,
    is_audit,
    unit_hash,
)

pytestmark = pytest.mark.integration


def test_audit_and_gold_hashes_match_bit_for_bit(postgres_dsn: str) -> None:
    items = [f"item-{i}" for i in range(300)] + ["ünïcode-é", "it's", ""]
    versions = [f"v{i % 5}" for i in range(len(items))]
    audit = audit_hash_sql("t.item_id", "t.model_version")
    gold = gold_hash_sql("t.item_id", "t.n")
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            f"SELECT t.item_id, t.model_version, t.n, {audit}, {gold}, {audit} < 0.3 "
            "FROM unnest(%s::text[], %s::text[], %s::int[]) AS t(item_id, model_version, n)",
            (items, versions, list(range(1, len(items) + 1))),
        ).fetchall()
    assert len(rows) == len(items)
    for item, version, n, audit_value, gold_value, audited in rows:
        assert audit_value == unit_hash(AUDIT_DOMAIN, item, version)
        assert gold_value == unit_hash(GOLD_DOMAIN, item, str(n))
        assert audited == is_audit(item, version, 0.3)
