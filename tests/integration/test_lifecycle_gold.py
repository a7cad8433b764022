"""Gold items and labeler blocks (issue 11) on the real PostgreSQL: gold items are served at
a labeler's onboarding claims and then at about quality.gold.rate of their claims, never
count toward the campaign's items, and score the labeler; the quality job blocks a labeler
whose Wilson upper bound falls below minAccuracy, whose labels on open items then stop
counting (those items reopen), and spec.labelers lists override the rule."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg_pool import ConnectionPool
from test_lifecycle_support import (
    GENERATION,
    add_gold_items,
    add_plain_items,
    assert_counters_match,
    assert_item_counts_match,
    lifecycle_config,
    outbox_messages,
    truth,
)
from test_store_support import migrated_schema, open_pool, query

from labelops.store import ClaimedTask, LabelStore
from labelops.store.errors import Blocked
from labelops.store.policy import CampaignPolicy
from labelops.worker.quality_loop import QualityJob

pytestmark = pytest.mark.integration

RATE, ONBOARDING, MIN_ANSWERS, MIN_ACCURACY = 0.2, 3, 10, 0.8
GOLD = {
    "gold": {
        "rate": RATE,
        "onboarding": ONBOARDING,
        "minAnswers": MIN_ANSWERS,
        "minAccuracy": MIN_ACCURACY,
    }
}
GOOD = [f"good-{n}" for n in range(6)]
BAD, PARDONED, BANNED = "bad", "pardoned", "banned"
N = 4  # labelsPerItem


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "lcgold") as name:
        yield name


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn, size=4) as opened:
        yield opened


class Labeling:
    """Claims and submissions through one store, remembering which claims were gold."""

    def __init__(self, store: LabelStore) -> None:
        self.store = store
        self.claims: dict[str, list[bool]] = {}

    def claim(self, labeler: str) -> ClaimedTask | None:
        task = self.store.claim(labeler)
        if task is not None:
            self.claims.setdefault(labeler, []).append(task.item_id.startswith("gold-"))
        return task

    def label(self, labeler: str, right: bool) -> ClaimedTask | None:
        """One claim and its submission: the right answer, or the wrong one."""
        task = self.claim(labeler)
        if task is not None:
            answer = truth(task.item_id)
            if not right:
                answer = "ham" if answer == "spam" else "spam"
            self.store.submit(labeler, task.item_id, {"choice": answer})
        return task


def gold_answers(pool: ConnectionPool[Any], schema: str, labeler: str) -> tuple[int, int]:
    rows = query(
        pool,
        schema,
        "SELECT gold_correct, gold_answers FROM {schema}.labeler_quality WHERE labeler = %s",
        labeler,
    )
    return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)


def item_state(pool: ConnectionPool[Any], schema: str) -> dict[str, tuple[int, int, bool]]:
    rows = query(
        pool,
        schema,
        "SELECT external_id, label_count, lease_count, completed_at IS NOT NULL"
        " FROM {schema}.items",
    )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def labels_of(pool: ConnectionPool[Any], schema: str, labeler: str) -> dict[str, tuple[str, bool]]:
    """(item -> (status, item complete)) of a labeler's labels on items that are not gold."""
    rows = query(
        pool,
        schema,
        "SELECT i.external_id, l.status, i.completed_at IS NOT NULL"
        " FROM {schema}.labels l JOIN {schema}.items i ON i.id = l.item_id"
        " WHERE l.labeler = %s AND NOT l.gold",
        labeler,
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def test_gold_turns_scores_blocks_and_exclusions(pool: ConnectionPool[Any], schema: str) -> None:
    plain = add_plain_items(pool, schema, 200, "sms")
    gold = add_gold_items(pool, schema, 60)
    config = lifecycle_config(schema, quality=GOLD, labels_per_item=N)
    labeling = Labeling(LabelStore(pool, config))

    # The bad labeler answers everything wrong, first: the plain items they label keep free
    # slots. The pardoned one too (spec.labelers.unblocked will pardon them). Two good
    # labelers complete the first of those items; the banned one labels a few of the next
    # (spec.labelers.blocked will ban them).
    for labeler in (BAD, PARDONED):
        while gold_answers(pool, schema, labeler)[1] < MIN_ANSWERS - 1:
            assert labeling.label(labeler, right=False) is not None
    # All wrong, but one answer short of gold.minAnswers: no verdict yet.
    assert QualityJob(pool, schema, CampaignPolicy.from_config(config)).run_once().blocked == []
    for labeler in (BAD, PARDONED):
        while gold_answers(pool, schema, labeler)[1] < MIN_ANSWERS:
            assert labeling.label(labeler, right=False) is not None
    for labeler in GOOD[:2]:
        for _ in range(12):
            assert labeling.label(labeler, right=True) is not None
    for _ in range(ONBOARDING + 4):
        assert labeling.label(BANNED, right=True) is not None
    # The onboarding claims were gold, for everyone.
    for labeler in (BAD, PARDONED, BANNED, *GOOD[:2]):
        assert labeling.claims[labeler][:ONBOARDING] == [True] * ONBOARDING, labeler
    assert gold_answers(pool, schema, BAD) == (0, MIN_ANSWERS)
    # The bad labeler holds a lease on a plain item when the block comes.
    while (held := labeling.claim(BAD)) is not None and held.item_id.startswith("gold-"):
        labeling.store.submit(BAD, held.item_id, {"choice": "spam"})
    assert held is not None

    before = item_state(pool, schema)
    bad_correct, bad_total = gold_answers(pool, schema, BAD)
    bad_labels = labels_of(pool, schema, BAD)
    banned_labels = labels_of(pool, schema, BANNED)
    open_bad = {i for i, (_, complete) in bad_labels.items() if not complete}
    open_banned = {i for i, (_, complete) in banned_labels.items() if not complete}
    assert open_bad and len(open_bad) < len(bad_labels), "labels on open and complete items"
    assert open_banned

    # A rollout with the lists: the worker writes the new policy, the job applies it.
    config = lifecycle_config(
        schema,
        quality=GOLD,
        labels_per_item=N,
        blocked=[BANNED],
        unblocked=[PARDONED],
        generation=GENERATION + 1,
    )
    store = LabelStore(pool, config)
    policy = store.sync_policy()
    labeling.store = store
    report = QualityJob(pool, schema, policy).run_once()
    assert report.ran and sorted(report.blocked) == [BAD, BANNED]
    assert report.excluded == len(open_bad) + len(open_banned)

    with pytest.raises(Blocked) as refused:
        store.claim(BAD)
    message = str(refused.value)
    assert "quality.gold" in message and f"{bad_correct} of {bad_total} gold answers" in message
    assert "gold.minAccuracy 0.8" in message and "upper bound" in message
    with pytest.raises(Blocked, match=r"quality\.gold"):
        store.submit(BAD, held.item_id, {"choice": "ham"})
    with pytest.raises(Blocked, match=r"spec\.labelers\.blocked"):
        store.claim(BANNED)
    pardoned_task = labeling.claim(PARDONED)  # below the bar too, but pardoned
    assert pardoned_task is not None

    after = item_state(pool, schema)
    for item_id, (status, complete) in labels_of(pool, schema, BAD).items():
        assert status == ("excluded" if item_id in open_bad else "counted"), item_id
        assert complete == bad_labels[item_id][1]
    for item_id in open_bad | open_banned:
        count, leases, complete = before[item_id]
        lost = (item_id in open_bad) + (item_id in open_banned)
        assert after[item_id] == (count - lost, leases, False), item_id
    count, leases, complete = before[held.item_id]
    assert after[held.item_id] == (count, leases - 1, complete)
    assert query(pool, schema, "SELECT count(*) FROM {schema}.leases WHERE labeler = %s", BAD) == [
        (0,)
    ]
    changed = {i for i in before if before[i] != after[i] and not i.startswith("gold-")}
    # PARDONED's claim above took one more lease.
    assert changed - (open_bad | open_banned | {held.item_id}) <= {
        t for t in plain if after[t][1] > before[t][1]
    }
    assert_item_counts_match(pool, schema)
    assert_counters_match(pool, schema)
    store.submit(PARDONED, pardoned_task.item_id, {"choice": "ham"})

    # Good labelers label everything left; the reopened items take other labels.
    # They take turns, one claim each, until a round finds nothing.
    crew = [PARDONED, *GOOD]
    progressed = True
    while progressed:
        tasks = [labeling.label(labeler, right=labeler != PARDONED) for labeler in crew]
        progressed = any(task is not None for task in tasks)
    assert QualityJob(pool, schema, policy).run_once().blocked == []
    # Every plain item complete with N counted labels; gold items never complete.
    states = item_state(pool, schema)
    unfinished = {i: states[i] for i in plain if states[i][0] != N or not states[i][2]}
    assert not unfinished
    assert not any(states[g][2] for g in gold)

    # Gold turns after onboarding: about `rate` of the claims (a binomial bound at 4 sigma;
    # the draws are a hash of labeler and claim number, fixed for these names).
    later = [c for labeler in GOOD for c in labeling.claims[labeler][ONBOARDING:]]
    n, hits = len(later), sum(later)
    assert abs(hits - RATE * n) <= 4 * math.sqrt(n * RATE * (1 - RATE)), (hits, n)
    for labeler in GOOD:
        assert labeling.claims[labeler][:ONBOARDING] == [True] * ONBOARDING, labeler

    # labeler_quality holds every gold answer, scored against the gold value.
    scored = query(
        pool,
        schema,
        "SELECT l.labeler, count(*) FILTER (WHERE l.answer = i.gold_value -> 'choice'),"
        " count(*) FROM {schema}.labels l JOIN {schema}.items i ON i.id = l.item_id"
        " WHERE i.gold_value IS NOT NULL GROUP BY l.labeler",
    )
    for labeler, correct, total in scored:
        assert gold_answers(pool, schema, labeler) == (correct, total), labeler
        if labeler in GOOD:
            assert correct == total
    assert_item_counts_match(pool, schema)
    assert_counters_match(pool, schema)

    # Lineage: every message carries its label's (labels given before the rollout say
    # generation 7, after it 8; an exclusion message repeats the label's own, 7); gold
    # answers say they are; exclusions were sent.
    messages = outbox_messages(pool, schema)
    lineage = {
        r[0]: (r[1], r[2])
        for r in query(
            pool, schema, "SELECT id::text, generation, spec_digest FROM {schema}.labels"
        )
    }
    assert all((m["generation"], m["specDigest"]) == lineage[m["labelId"]] for m in messages)
    assert {m["generation"] for m in messages} == {GENERATION, GENERATION + 1}
    assert {m["generation"] for m in messages if m["status"] == "excluded"} == {GENERATION}
    gold_messages = [m for m in messages if m["itemId"].startswith("gold-")]
    assert gold_messages and all(m.get("gold") is True for m in gold_messages)
    assert not any(m.get("gold") for m in messages if not m["itemId"].startswith("gold-"))
    excluded = {m["itemId"] for m in messages if m.get("status") == "excluded"}
    assert excluded == open_bad | open_banned

    # A rollout whose lists name nobody: the banned labeler's block is lifted; the gold
    # rule's block stays, and now reaches the labeler no longer pardoned.
    config = lifecycle_config(schema, quality=GOLD, labels_per_item=N, generation=GENERATION + 2)
    store = LabelStore(pool, config)
    QualityJob(pool, schema, store.sync_policy()).run_once()
    store.claim(BANNED)  # no Blocked
    with pytest.raises(Blocked, match=r"quality\.gold"):
        store.claim(BAD)
    blocked = query(
        pool, schema, "SELECT labeler FROM {schema}.labeler_quality WHERE blocked_at IS NOT NULL"
    )
    assert sorted(blocked) == [(BAD,), (PARDONED,)]
