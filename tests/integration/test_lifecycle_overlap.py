"""Adaptive overlap (issue 11) under 32 concurrent labelers on the real PostgreSQL: an item
takes labels one at a time until the one-coin posterior of its leading answer reaches
quality.overlap.agreement (at least min labels), or completes disputed at max; never more
than max labels, never two from one labeler, never a lease beyond the item's label_cap."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg_pool import ConnectionPool
from test_lifecycle_support import (
    GENERATION,
    LABELERS,
    add_plain_items,
    assert_counters_match,
    assert_item_counts_match,
    lifecycle_config,
    outbox_messages,
    run_concurrently,
    truth,
)
from test_store_support import migrated_schema, open_pool, query

from labelops.quality.posterior import labeler_accuracy, leading, posterior
from labelops.store import LabelStore
from labelops.store.policy import spec_digest

pytestmark = pytest.mark.integration

MIN, MAX, AGREEMENT = 2, 7, 0.95
OVERLAP = {"overlap": {"min": MIN, "max": MAX, "agreement": AGREEMENT}}


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "lcov") as name:
        yield name


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn, size=len(LABELERS) + 2) as opened:
        yield opened


def open_item_for(pool: ConnectionPool[Any], schema: str, labeler: str) -> bool:
    """Whether an open item is left that this labeler never labeled: while there is one,
    a claim that found nothing may find something later (a lease is submitted without
    completing its item, whose label_cap then grows by one)."""
    [(left,)] = query(
        pool,
        schema,
        "SELECT EXISTS (SELECT 1 FROM {schema}.items i WHERE i.completed_at IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM {schema}.labels l"
        "                 WHERE l.item_id = i.id AND l.labeler = %s))",
        labeler,
    )
    return bool(left)


def test_adaptive_overlap_with_32_labelers(pool: ConnectionPool[Any], schema: str) -> None:
    items = 80
    config = lifecycle_config(schema, quality=OVERLAP, labels_per_item=MIN)
    store = LabelStore(pool, config)
    add_plain_items(pool, schema, items, "sms")
    # A quarter of the labelers answer at random, the others are right 90% of the time.
    noisy = set(LABELERS[::4])
    done = threading.Event()
    violations: list[Any] = []

    def watch_caps() -> None:
        """While labeling runs: no item ever holds labels + leases beyond its label_cap,
        and no cap beyond max."""
        while not done.is_set():
            violations.extend(
                query(
                    pool,
                    schema,
                    "SELECT external_id, label_count, lease_count, label_cap"
                    " FROM {schema}.items"
                    " WHERE label_count + lease_count > coalesce(label_cap, %s)"
                    "    OR coalesce(label_cap, %s) > %s OR label_count > %s",
                    MIN,
                    MIN,
                    MAX,
                    MAX,
                )
            )

    def label(labeler: str) -> None:
        rng = random.Random(labeler)
        while True:
            task = store.claim(labeler)
            if task is None:
                if not open_item_for(pool, schema, labeler):
                    return
                done.wait(0.02)  # a lease elsewhere decides whether a slot opens
                continue
            right = truth(task.item_id)
            wrong = "ham" if right == "spam" else "spam"
            careful = labeler not in noisy and rng.random() < 0.9
            answer = right if careful else rng.choice([right, wrong])
            store.submit(labeler, task.item_id, {"choice": answer})

    watcher = threading.Thread(target=watch_caps)
    watcher.start()
    try:
        run_concurrently(LABELERS, label)
    finally:
        done.set()
        watcher.join()
    assert not violations, f"(item, labels, leases, cap) beyond the cap: {violations[:5]}"

    rows = query(
        pool,
        schema,
        "SELECT i.external_id, i.completed_at IS NOT NULL, i.disputed, i.label_count,"
        " i.consolidated_value, i.consolidated_confidence,"
        " array_agg(l.labeler ORDER BY l.ordinal),"
        " array_agg(l.answer #>> '{{}}' ORDER BY l.ordinal)"
        " FROM {schema}.items i JOIN {schema}.labels l ON l.item_id = i.id"
        " GROUP BY i.id ORDER BY i.id",
    )
    assert len(rows) == items
    # Nobody's accuracy is known yet (no gold, no agreement counted): 2/3 each.
    accuracy = labeler_accuracy(0, 0, 0, 0, num_classes=2)
    disputed = 0
    for item_id, complete, is_disputed, count, value, confidence, labelers, answers in rows:
        assert complete, f"{item_id} is not complete"
        assert MIN <= count <= MAX and len(labelers) == count, (item_id, count, labelers)
        assert len(set(labelers)) == count, f"{item_id}: two labels from one labeler"
        dist = posterior([(a, accuracy) for a in answers], 2)
        lead, p = leading(dist)
        assert value == {"choice": lead} and confidence == pytest.approx(p), item_id
        # Completed at the first label that made the rule hold, not one later.
        for k in range(MIN, count):
            _, earlier = leading(posterior([(a, accuracy) for a in answers[:k]], 2))
            assert earlier < AGREEMENT, f"{item_id} should have completed at {k} labels"
        if count == MAX and p < AGREEMENT:
            assert is_disputed, f"{item_id} reached max without agreement but is not disputed"
            disputed += 1
        else:
            assert p >= AGREEMENT and not is_disputed, (item_id, p, is_disputed)
    # With a quarter of the labelers guessing, both outcomes occur (P(no dispute) < 1e-9).
    assert 0 < disputed < items
    assert any(r[3] < MAX for r in rows)
    assert query(pool, schema, "SELECT count(*) FROM {schema}.leases WHERE reserved") == [(0,)]
    assert_item_counts_match(pool, schema)
    assert_counters_match(pool, schema)
    messages = outbox_messages(pool, schema)
    assert len(messages) == sum(r[3] for r in rows)
    assert {(m["generation"], m["specDigest"]) for m in messages} == {
        (GENERATION, spec_digest(config.task))
    }
    assert not any(m.get("gold") for m in messages)


def test_one_item_by_hand_against_the_posterior(pool: ConnectionPool[Any], schema: str) -> None:
    """ham, spam, then ham five times from fresh labelers (accuracy 2/3 each, weight ln 2):
    the posterior of ham after k labels is 2/3, 1/2, 2/3, 4/5, 8/9, 16/17 (< 0.95), then
    32/33: complete at 7 = max, agreed, so not disputed."""
    store = LabelStore(pool, lifecycle_config(schema, quality=OVERLAP, labels_per_item=MIN))
    [item] = add_plain_items(pool, schema, 1, "hand")
    answers = ["ham", "spam", "ham", "ham", "ham", "ham", "ham"]
    accuracy = labeler_accuracy(0, 0, 0, 0, num_classes=2)
    for k, answer in enumerate(answers, start=1):
        labeler = LABELERS[k]
        task = store.claim(labeler)
        assert task is not None and task.item_id == item, f"label {k}: no task"
        result = store.submit(labeler, item, {"choice": answer})
        [(cap, complete, value, confidence)] = query(
            pool,
            schema,
            "SELECT label_cap, completed_at IS NOT NULL, consolidated_value,"
            " consolidated_confidence FROM {schema}.items",
        )
        expected = leading(posterior([(a, accuracy) for a in answers[:k]], 2))[1]
        if k < len(answers):
            assert not complete and expected < AGREEMENT, (k, expected)
            assert cap == max(MIN, k + 1), f"after {k} labels the cap is {cap}"
        else:
            assert complete and value == {"choice": "ham"}
            [(disputed,)] = query(pool, schema, "SELECT disputed FROM {schema}.items")
            assert not disputed
            assert confidence == pytest.approx(expected) == pytest.approx(32 / 33)
        assert result.label_id
    assert store.claim(LABELERS[0]) is None
