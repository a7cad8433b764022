"""Models in the loop (issue 10) on the real PostgreSQL: a model version starts untrusted,
is calibrated on the audits people complete (no threshold before 59 correct audits above
it, at 95% / 95%), then auto-accepts the pending items its threshold covers while 32
labelers claim (exactly one label per item, never an item a person holds), and the brake
withdraws exactly the machine labels given after its last passing window when audits fail."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg_pool import ConnectionPool
from test_lifecycle_support import (
    GENERATION,
    LABELERS,
    assert_counters_match,
    assert_item_counts_match,
    lifecycle_config,
    outbox_messages,
    run_concurrently,
    score_items,
    truth,
    write_items,
)
from test_store_support import migrated_schema, open_pool, query, wait_for

from labelops.store import LabelStore
from labelops.store.items import ItemRecord
from labelops.store.policy import spec_digest
from labelops.worker.quality_loop import QualityJob

pytestmark = pytest.mark.integration

AUDIT_RATE = 0.5
MODEL = {
    "order": "priority",
    "autoAccept": {
        "targetAccuracy": 0.95,
        "confidenceLevel": 0.95,
        "auditRate": AUDIT_RATE,
        "brakeWindow": 20,
    },
}


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "lcauto") as name:
        yield name


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn, size=len(LABELERS) + 4) as opened:
        yield opened


def other(answer: str) -> str:
    return "ham" if answer == "spam" else "spam"


def audits(pool: ConnectionPool[Any], schema: str) -> list[Any]:
    return query(pool, schema, "SELECT correct FROM {schema}.audits")


def version_row(pool: ConnectionPool[Any], schema: str, version: str) -> tuple[Any, ...]:
    [row] = query(
        pool,
        schema,
        "SELECT threshold, trusted, braked, last_passing_at FROM {schema}.model_versions"
        " WHERE version = %s",
        version,
    )
    return tuple(row)


def label_open_items(store: LabelStore, labelers: list[str]) -> int:
    """People label every open item (the right answer), taking turns; returns the labels."""
    given = 0
    while True:
        progressed = False
        for labeler in labelers:
            task = store.claim(labeler)
            if task is not None:
                store.submit(labeler, task.item_id, {"choice": truth(task.item_id)})
                given += 1
                progressed = True
        if not progressed:
            return given


def machine_labels(pool: ConnectionPool[Any], schema: str, status: str) -> set[str]:
    rows = query(
        pool,
        schema,
        "SELECT id::text FROM {schema}.labels WHERE origin = 'machine' AND status = %s",
        status,
    )
    return {r[0] for r in rows}


def test_calibration_auto_accept_race_and_brake(pool: ConnectionPool[Any], schema: str) -> None:
    config = lifecycle_config(schema, model=MODEL, max_leases=2)
    store = LabelStore(pool, config)
    policy = store.sync_policy()
    job = QualityJob(pool, schema, policy)
    rng = random.Random(10)

    # 1500 items, half of them high priority, scored by v1 (right, at confidences 0.5-1)
    # before v1 is trusted: nothing is auto-accepted at ingest.
    ids = [f"sms-{i:05d}" for i in range(1500)]
    write_items(
        pool,
        schema,
        [ItemRecord(id=i, payload={"text": i}, priority=n % 2) for n, i in enumerate(ids)],
    )
    assert (
        score_items(pool, schema, "v1", {i: (truth(i), 0.5 + 0.4999 * rng.random()) for i in ids})
        == 0
    )
    assert version_row(pool, schema, "v1")[:3] == (None, False, False)
    [(audit_items,)] = query(pool, schema, "SELECT count(*) FROM {schema}.items WHERE audit")
    n = len(ids)
    assert abs(audit_items - AUDIT_RATE * n) <= 4 * math.sqrt(n * AUDIT_RATE * (1 - AUDIT_RATE))

    # One person labels until 58 audits are complete: no threshold yet.
    auditor = "auditor"
    while len(audits(pool, schema)) < 58:
        task = store.claim(auditor)
        assert task is not None
        store.submit(auditor, task.item_id, {"choice": truth(task.item_id)})
    assert all(correct for (correct,) in audits(pool, schema))
    report = job.run_once()
    assert report.calibrated == ["v1"] and report.auto_accepted == 0
    assert version_row(pool, schema, "v1")[:2] == (None, False)
    while len(audits(pool, schema)) < 59:
        task = store.claim(auditor)
        assert task is not None
        store.submit(auditor, task.item_id, {"choice": truth(task.item_id)})

    # The race: 32 labelers claim and submit while the job calibrates v1 and auto-accepts.
    done = threading.Event()
    both: list[Any] = []

    def watch() -> None:
        while not done.is_set():
            both.extend(
                query(
                    pool,
                    schema,
                    "SELECT i.external_id FROM {schema}.items i WHERE i.machine_labeled"
                    " AND (i.lease_count > 0 OR EXISTS (SELECT 1 FROM {schema}.leases e"
                    "      WHERE e.item_id = i.id AND e.reserved))",
                )
            )

    def label(labeler: str) -> None:
        for _ in range(15):
            task = store.claim(labeler)
            if task is None:
                continue
            store.submit(labeler, task.item_id, {"choice": truth(task.item_id)})

    reports = []

    def run_job() -> None:
        wait_for(
            lambda: query(pool, schema, "SELECT count(*) > 150 FROM {schema}.labels")[0][0],
            120,
            "the labelers to start",
        )
        reports.append(job.run_once())

    watcher = threading.Thread(target=watch)
    runner = threading.Thread(target=run_job)
    watcher.start()
    runner.start()
    try:
        run_concurrently(LABELERS, label)
        runner.join(timeout=300)
    finally:
        done.set()
        watcher.join()
    assert not both, f"items leased to a person and machine-labeled: {both[:5]}"
    [report] = reports
    threshold, trusted, braked, passing = version_row(pool, schema, "v1")
    assert trusted and not braked and threshold is not None and passing is not None
    assert report.auto_accepted > 0
    assert job.run_once().ran  # picks up what the race left (the threshold may move)
    latest = version_row(pool, schema, "v1")[0]
    floor = min(threshold, latest)

    # Exactly one label per auto-accepted item, the model's, and nobody else's.
    rows = query(
        pool,
        schema,
        "SELECT i.external_id, i.machine_labeled, i.audit, i.model_confidence,"
        " i.completed_at IS NOT NULL, array_agg(l.labeler) FILTER (WHERE l.id IS NOT NULL),"
        " array_agg(l.confidence) FILTER (WHERE l.id IS NOT NULL)"
        " FROM {schema}.items i LEFT JOIN {schema}.labels l ON l.item_id = i.id"
        " WHERE i.gold_value IS NULL GROUP BY i.id",
    )
    machine = 0
    for item_id, machined, audit, confidence, complete, labelers, confidences in rows:
        if machined:
            machine += 1
            assert not audit and complete and labelers == ["model:v1"], (item_id, labelers)
            assert confidences == [confidence] and confidence >= floor
        elif complete:
            assert labelers and not any(x.startswith("model:") for x in labelers), item_id
        else:  # open: below the threshold, or an audit, and nobody labeled it
            assert audit or confidence < latest, item_id
            assert not labelers, item_id
    assert machine >= report.auto_accepted
    assert_item_counts_match(pool, schema)
    assert_counters_match(pool, schema)

    # People complete what is left (audits included, all correct): the window passes later.
    label_open_items(store, LABELERS[:4])
    assert job.run_once().calibrated == ["v1"]
    threshold, trusted, braked, last_passing = version_row(pool, schema, "v1")
    assert trusted and not braked and last_passing > passing
    kept = machine_labels(pool, schema, "counted")

    # Then v1 goes wrong, at high confidence: ingest auto-accepts what is not an audit,
    # people answer the audits and disagree.
    late = [f"late-{i:04d}" for i in range(120)]
    write_items(pool, schema, [ItemRecord(id=i, payload={"text": i}) for i in late])
    given = score_items(
        pool, schema, "v1", {i: (other(truth(i)), 0.9999 - 0.0001 * rng.random()) for i in late}
    )
    assert given > 0
    late_labels = machine_labels(pool, schema, "counted") - kept
    assert len(late_labels) == given
    label_open_items(store, LABELERS[:4])
    assert not all(correct for (correct,) in audits(pool, schema))

    report = job.run_once()
    assert report.braked == ["v1"] and report.withdrawn == given
    assert machine_labels(pool, schema, "withdrawn") == late_labels
    assert machine_labels(pool, schema, "counted") == kept
    threshold, trusted, braked, _ = version_row(pool, schema, "v1")
    assert braked and not trusted and threshold is None
    reopened = query(
        pool,
        schema,
        "SELECT i.completed_at IS NULL AND NOT i.machine_labeled AND i.label_count = 0"
        "   AND i.consolidated_value IS NULL"
        " FROM {schema}.items i JOIN {schema}.labels l ON l.item_id = i.id"
        " WHERE l.status = 'withdrawn'",
    )
    assert len(reopened) == given and all(r[0] for r in reopened)
    assert_item_counts_match(pool, schema)
    assert_counters_match(pool, schema)

    # Braked stays braked: more audits, more items, nothing auto-accepted; people take the
    # reopened items.
    again = job.run_once()
    assert again.withdrawn == 0 and again.auto_accepted == 0
    more = [f"more-{i:04d}" for i in range(40)]
    write_items(pool, schema, [ItemRecord(id=i, payload={"text": i}) for i in more])
    assert score_items(pool, schema, "v1", {i: (truth(i), 0.9999) for i in more}) == 0
    assert label_open_items(store, LABELERS[:4]) >= given
    assert job.run_once().auto_accepted == 0
    assert version_row(pool, schema, "v1")[1:3] == (False, True)

    # A new version starts untrusted, calibrated on its own audits.
    fresh = [f"fresh-{i:04d}" for i in range(40)]
    write_items(pool, schema, [ItemRecord(id=i, payload={"text": i}) for i in fresh])
    assert score_items(pool, schema, "v2", {i: (truth(i), 0.9999) for i in fresh}) == 0
    assert version_row(pool, schema, "v2")[:3] == (None, False, False)
    assert job.run_once().auto_accepted == 0
    assert_item_counts_match(pool, schema)
    assert_counters_match(pool, schema)

    # Lineage of every message; machine labels say which version, with what confidence.
    messages = outbox_messages(pool, schema)
    digest = spec_digest(config.task)
    assert all(m["generation"] == GENERATION and m["specDigest"] == digest for m in messages)
    machine_messages = [m for m in messages if m["origin"] == "machine"]
    assert {m["labeler"] for m in machine_messages} == {"model:v1"}
    assert all(m["modelVersion"] == "v1" and 0 < m["confidence"] <= 1 for m in machine_messages)
    withdrawn = {m["labelId"] for m in machine_messages if m["status"] == "withdrawn"}
    assert withdrawn == late_labels
    assert len(machine_messages) == len(kept) + 2 * len(late_labels)
