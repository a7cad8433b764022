"""`labelops labelers` on the real PostgreSQL (its pure parts: test_report_labelers): labelers
claim and answer through the store, the worker's quality job blocks the careless one from
their gold answers, and the report
reads back every figure the labeling left (labels, exclusions, gold and its interval,
skips, the block and its reason, a ban from spec.labelers.blocked)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from psycopg_pool import ConnectionPool
from test_store_support import make_config, migrated_schema, open_pool, query

from labelops.api.campaign import QualitySpec
from labelops.api.worker_configmap import WorkerConfig
from labelops.quality.intervals import wilson
from labelops.report.labelers import LabelerReport, read_reports, render
from labelops.store import LabelStore
from labelops.store.items import ItemRecord, write_ingest_batch
from labelops.store.policy import CampaignPolicy
from labelops.store.queries import Queries
from labelops.worker.quality_loop import QualityJob

pytestmark = pytest.mark.integration

TASK = {"type": "classification", "instructions": "Spam?", "choices": ["ham", "spam"]}
GOLD = {"gold": {"rate": 0.0, "onboarding": 4, "minAnswers": 4, "minAccuracy": 0.7}}
GOLD_ITEMS = 4
ITEMS = 6


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "labelers") as name:
        yield name


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn) as opened:
        yield opened


def config(schema: str) -> WorkerConfig:
    base = make_config(schema, task=TASK, labels_per_item=3)
    return base.model_copy(
        update={"quality": QualitySpec.model_validate(GOLD), "blocked": ["mallory"]}
    )


def truth(item_id: str) -> str:
    return "spam" if item_id.endswith(("1", "3")) else "ham"


def other(answer: str) -> str:
    return "ham" if answer == "spam" else "spam"


def seed(pool: ConnectionPool[Any], schema: str) -> None:
    gold = [
        ItemRecord(id=f"gold-{n}", payload={"text": f"g{n}"}, gold_value={"choice": truth(str(n))})
        for n in range(GOLD_ITEMS)
    ]
    plain = [ItemRecord(id=f"sms-{n}", payload={"text": f"s{n}"}) for n in range(ITEMS)]
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        write_ingest_batch(cur, Queries(schema), [*gold, *plain], [])


def work(store: LabelStore, labeler: str, careful: bool, labels: int, skips: int = 0) -> None:
    """Claim until `labels` non-gold labels are given: gold (onboarding) answered right when
    careful, wrong otherwise; the first `skips` non-gold tasks released instead."""
    given = 0
    while given < labels:
        task = store.claim(labeler)
        assert task is not None, f"{labeler} found no task"
        right = truth(task.item_id.rsplit("-", 1)[1])
        if task.item_id.startswith("gold-"):
            store.submit(labeler, task.item_id, {"choice": right if careful else other(right)})
        elif skips:
            assert store.release(labeler, task.item_id)
            skips -= 1
        else:
            store.submit(labeler, task.item_id, {"choice": right if careful else other(right)})
            given += 1


def by_labeler(rows: list[LabelerReport]) -> dict[str, LabelerReport]:
    return {row.labeler: row for row in rows}


def test_the_report_reads_what_labeling_and_the_quality_job_left(
    pool: ConnectionPool[Any], schema: str
) -> None:
    seed(pool, schema)
    cfg = config(schema)
    store = LabelStore(pool, cfg)
    work(store, "alice", careful=True, labels=3, skips=1)
    work(store, "clicker", careful=False, labels=2)

    before = by_labeler(read_reports_of(pool, schema))
    assert set(before) == {"alice", "clicker", "mallory"}
    assert before["clicker"].blocked is False
    # mallory never claimed: spec.labelers.blocked names her, and so does the report.
    assert before["mallory"].blocked is True
    assert before["mallory"].blocked_reason == "spec.labelers.blocked lists them"

    job = QualityJob(pool, schema, CampaignPolicy.from_config(cfg))
    ran = job.run_once(force_summary=True)
    assert "clicker" in ran.blocked and "alice" not in ran.blocked

    rows = by_labeler(read_reports_of(pool, schema))
    alice, clicker = rows["alice"], rows["clicker"]
    assert (alice.labels, alice.excluded, alice.skips) == (3, 0, 1)
    assert (alice.gold_correct, alice.gold_answers) == (GOLD_ITEMS, GOLD_ITEMS)
    assert alice.blocked is False and alice.blocked_reason is None
    perfect = wilson(GOLD_ITEMS, GOLD_ITEMS)
    assert (alice.gold_low, alice.gold_high) == (perfect.low, perfect.high)

    # The clicker's two labels were on items still open (3 labels each): excluded now.
    assert (clicker.labels, clicker.excluded) == (0, 2)
    assert (clicker.gold_correct, clicker.gold_answers, clicker.gold_accuracy) == (0, 4, 0.0)
    assert clicker.gold_high == wilson(0, GOLD_ITEMS).high
    assert clicker.blocked is True
    assert clicker.blocked_reason is not None
    assert "quality.gold" in clicker.blocked_reason
    assert "0 of 4 gold answers correct" in clicker.blocked_reason
    assert "gold.minAccuracy 0.7" in clicker.blocked_reason

    # The figures are the tables' own, recounted the slow way.
    counted = dict(
        query(
            pool,
            schema,
            "SELECT labeler, count(*) FROM {schema}.labels"
            " WHERE status = 'counted' AND NOT gold AND origin = 'human' GROUP BY labeler",
        )
    )
    assert counted == {"alice": 3}

    table = render(list(rows.values())).splitlines()
    assert [line.split()[0] for line in table[1:]] == ["alice", "clicker", "mallory"]
    assert "yes: quality.gold: blocked: 0 of 4 gold answers correct" in table[2]


def read_reports_of(pool: ConnectionPool[Any], schema: str) -> list[LabelerReport]:
    with pool.connection() as conn:
        return read_reports(conn, schema)


def test_an_empty_campaign_has_no_labelers(pool: ConnectionPool[Any], schema: str) -> None:
    assert read_reports_of(pool, schema) == []
