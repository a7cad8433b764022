"""The claim order of model.order (issue 10) on the real PostgreSQL: priority first, then
with uncertainty audits (least confident first), unscored items, the least confident; with
priority, ingest order. A rollout that changes model.order re-ranks the open items."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg_pool import ConnectionPool
from test_lifecycle_support import lifecycle_config, score_items, truth, write_items
from test_store_support import migrated_schema, open_pool, query

from labelops.store import LabelStore
from labelops.store.items import ItemRecord

pytestmark = pytest.mark.integration


def model(order: str) -> dict[str, Any]:
    return {"order": order, "autoAccept": {"auditRate": 0.4}}


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "lcorder") as name:
        yield name


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn, size=4) as opened:
        yield opened


def claim_everything(store: LabelStore, labeler: str) -> list[str]:
    claimed = []
    while (task := store.claim(labeler)) is not None:
        claimed.append(task.item_id)
    return claimed


def test_claim_order_follows_model_order(pool: ConnectionPool[Any], schema: str) -> None:
    rng = random.Random(3)
    ids = [f"sms-{i:03d}" for i in range(60)]
    write_items(
        pool,
        schema,
        [
            ItemRecord(id=i, payload={"text": i}, priority=int(n % 5 == 0))
            for n, i in enumerate(ids)
        ],
    )
    store = LabelStore(
        pool,
        lifecycle_config(schema, model=model("uncertainty"), max_leases=100, labels_per_item=3),
    )
    store.sync_policy()
    scored = ids[10:]  # the first ten stay unscored
    assert score_items(pool, schema, "v1", {i: (truth(i), rng.random()) for i in scored}) == 0
    rows = query(
        pool, schema, "SELECT external_id, priority, audit, model_confidence FROM {schema}.items"
    )
    audits = sum(1 for r in rows if r[2])
    assert 0 < audits < len(scored)

    def uncertainty(row: Any) -> tuple[Any, ...]:
        item_id, priority, audit, confidence = row
        band = 1 if confidence is None else (0 if audit else 2)
        return (-priority, band, confidence or 0, item_id)

    by_uncertainty = [r[0] for r in sorted(rows, key=uncertainty)]
    by_priority = [r[0] for r in sorted(rows, key=lambda r: (-r[1], r[0]))]
    assert by_uncertainty != by_priority
    assert claim_everything(store, "first") == by_uncertainty

    # A rollout to model.order priority: ingest order within a priority.
    store = LabelStore(
        pool, lifecycle_config(schema, model=model("priority"), max_leases=100, labels_per_item=3)
    )
    store.sync_policy()
    assert claim_everything(store, "second") == by_priority
    # And back.
    store = LabelStore(
        pool,
        lifecycle_config(schema, model=model("uncertainty"), max_leases=100, labels_per_item=3),
    )
    store.sync_policy()
    assert claim_everything(store, "third") == by_uncertainty
