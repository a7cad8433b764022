"""Ingest from the real items and predictions topics: idempotent under redelivery, dead letters
with the reason, offsets after the commit, predictions before and after their items."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from psycopg import sql
from psycopg_pool import ConnectionPool
from test_store_support import (
    create_topics,
    make_config,
    migrated_schema,
    open_pool,
    query,
    unique_name,
    wait_for,
)

from devstack.kafka import client_connection
from labelops.api.campaign import ModelSpec
from labelops.api.kafka_connection import KafkaConnection
from labelops.api.worker_configmap import WorkerConfig
from labelops.quality.sampling import AUDIT_DOMAIN, unit_hash
from labelops.store import LabelStore
from labelops.store.migrations import migrate
from labelops.store.progress import read_progress
from labelops.worker.ingest import Ingestor
from labelops.worker.pipeline import Pipeline

pytestmark = pytest.mark.integration


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "ingest") as name:
        yield name


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn) as opened:
        yield opened


@pytest.fixture
def config(schema: str, kafka: KafkaConnection) -> WorkerConfig:
    items, labels = unique_name("items"), unique_name("labels")
    create_topics(kafka.bootstrap, items, labels)
    return make_config(schema, topics=(items, labels), consumer_group=unique_name("group"))


def item_message(item_id: str, text: str = "some text", **extra: Any) -> bytes:
    return json.dumps({"id": item_id, "payload": {"text": text}, **extra}).encode()


def model(version: str, choice: str, confidence: float) -> dict[str, Any]:
    return {"version": version, "prediction": {"choice": choice}, "confidence": confidence}


def prediction_message(item_id: str, version: str, choice: str, confidence: float) -> bytes:
    return json.dumps({"id": item_id, "model": model(version, choice, confidence)}).encode()


def produce(
    bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes | None]]
) -> None:
    producer = Producer(client_connection(bootstrap).client_config())
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0, "the test's messages were not all delivered"


def ingest_until(ingestor: Ingestor, condition: Any, what: str) -> None:
    def step() -> bool:
        ingestor.poll_once(timeout=0.5)
        return bool(condition())

    wait_for(step, timeout=60, what=what)


def handle(ingestor: Ingestor, messages: int) -> None:
    """Poll until the ingestor handled (ingested or dead-lettered) this many messages."""
    handled = 0

    def step() -> bool:
        nonlocal handled
        handled += ingestor.poll_once(timeout=0.5)
        return handled >= messages

    wait_for(step, timeout=60, what=f"{messages} messages handled")


def count(pool: ConnectionPool[Any], schema: str, table: str) -> int:
    return int(query(pool, schema, "SELECT count(*) FROM {schema}." + table)[0][0])


def test_redelivered_items_are_stored_once(
    pool: ConnectionPool[Any], schema: str, config: WorkerConfig, kafka: KafkaConnection
) -> None:
    batch = [(f"item-{i}".encode(), item_message(f"item-{i}")) for i in range(50)]
    produce(kafka.bootstrap, config.topics.items, batch + batch[:10])
    ingestor = Ingestor(Pipeline(pool, config, kafka))
    try:
        ingest_until(ingestor, lambda: count(pool, schema, "items") == 50, "50 items")
        # Everything again: the same messages produced twice more ...
        produce(kafka.bootstrap, config.topics.items, batch)
        handle(ingestor, len(batch))
    finally:
        ingestor.close()
    # ... and the whole topic re-read by a consumer group that starts from scratch.
    again = Ingestor(
        Pipeline(pool, config.model_copy(update={"consumer_group": unique_name("g")}), kafka)
    )
    try:
        handle(again, 2 * len(batch) + 10)
    finally:
        again.close()

    assert count(pool, schema, "items") == 50
    with pool.connection() as conn:
        assert read_progress(conn, schema).items_total == 50
    assert count(pool, schema, "dead_letters") == 0


def test_offsets_are_committed_after_the_database_commit_only(
    postgres_dsn: str, pool: ConnectionPool[Any], config: WorkerConfig, kafka: KafkaConnection
) -> None:
    produce(kafka.bootstrap, config.topics.items, [(b"a", item_message("a"))])
    missing = unique_name("notyet")
    broken = config.model_copy(update={"schema_": missing})
    ingestor = Ingestor(Pipeline(pool, broken, kafka))
    try:

        def write_fails() -> bool:
            try:
                ingestor.poll_once(timeout=0.5)
            except psycopg.errors.UndefinedTable:
                return True
            return False

        wait_for(write_fails, timeout=60, what="the write into a missing schema to fail")
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            migrate(conn, missing)
        # The failed batch was not committed: the same consumer reads it again.
        ingest_until(ingestor, lambda: count(pool, missing, "items") == 1, "the retried item")
    finally:
        ingestor.close()
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{missing}" CASCADE')  # our own generated name


def test_a_poll_returns_with_every_batch_it_read_written(
    pool: ConnectionPool[Any], schema: str, config: WorkerConfig, kafka: KafkaConnection
) -> None:
    # Small batches, so one poll pipelines several: reads one while the one before is written.
    messages = [(f"p-{i}".encode(), item_message(f"p-{i}")) for i in range(40)]
    produce(kafka.bootstrap, config.topics.items, messages)
    ingestor = Ingestor(Pipeline(pool, config, kafka), batch_size=3, writers=1)
    handled = 0

    def step() -> bool:
        nonlocal handled
        handled += ingestor.poll_once(timeout=0.5)
        # Nothing left in flight once a poll returned: what it counted is in the database.
        assert count(pool, schema, "items") == handled
        return handled >= len(messages)

    try:
        wait_for(step, timeout=60, what=f"{len(messages)} messages handled")
    finally:
        ingestor.close()
    assert count(pool, schema, "items") == len(messages)


def test_malformed_messages_are_dead_lettered_and_ingest_goes_on(
    pool: ConnectionPool[Any], schema: str, config: WorkerConfig, kafka: KafkaConnection
) -> None:
    bad = [
        (b"x1", b"{not json"),
        (b"x2", json.dumps({"payload": {"text": "t"}}).encode()),
        (b"other", item_message("x3")),
        (None, item_message("x4")),
        (b"x5", json.dumps({"id": "x5", "payload": {"prompt": "no text"}}).encode()),
        (b"x6", item_message("x6", text="nul \u0000 inside")),
        (b"x7", None),
        (b"x8", b'{"id": "x8", "payload": {"text": "t"}, "model": {"confidence": NaN}}'),
        (b"x9", item_message("x9", priority="high")),
    ]
    good = (
        b"ok",
        item_message("ok", priority=3, model=model("v1", "helpful", 0.9)),
    )
    produce(kafka.bootstrap, config.topics.items, [*bad, good])
    ingestor = Ingestor(Pipeline(pool, config, kafka))
    try:
        ingest_until(ingestor, lambda: count(pool, schema, "items") == 1, "the good item")
    finally:
        ingestor.close()

    reasons = dict(
        query(
            pool,
            schema,
            "SELECT convert_from(raw_key, 'UTF8'), reason FROM {schema}.dead_letters"
            " WHERE raw_key IS NOT NULL",
        )
    )
    assert "value is not JSON" in reasons["x1"]
    assert "'id' is a required property" in reasons["x2"]
    assert "key 'other' does not match id 'x3'" in reasons["other"]
    assert "/payload: 'text' is a required property" in reasons["x5"]
    assert "/payload/text: contains the NUL character" in reasons["x6"]
    assert "no value" in reasons["x7"]
    assert "NaN is not a JSON number" in reasons["x8"]
    assert "/priority: 'high' is not of type 'integer'" in reasons["x9"]
    [(keyless,)] = query(
        pool, schema, "SELECT reason FROM {schema}.dead_letters WHERE raw_key IS NULL"
    )
    assert "no key" in keyless
    with pool.connection() as conn:
        assert read_progress(conn, schema).dead_lettered == len(bad)

    [(priority, prediction, confidence)] = query(
        pool, schema, "SELECT priority, model_prediction, model_confidence FROM {schema}.items"
    )
    assert (priority, prediction, confidence) == (3, {"choice": "helpful"}, 0.9)

    again = Ingestor(
        Pipeline(pool, config.model_copy(update={"consumer_group": unique_name("g")}), kafka)
    )
    try:
        handle(again, len(bad) + 1)
    finally:
        again.close()
    assert count(pool, schema, "dead_letters") == len(bad), "a bad message is recorded once"
    with pool.connection() as conn:
        assert read_progress(conn, schema).dead_lettered == len(bad)


def test_an_item_changes_only_until_a_labeler_has_seen_it(
    pool: ConnectionPool[Any], schema: str, config: WorkerConfig, kafka: KafkaConnection
) -> None:
    store = LabelStore(pool, config)
    ingestor = Ingestor(Pipeline(pool, config, kafka))

    def item_text() -> Any:
        return query(pool, schema, "SELECT payload->>'text', priority FROM {schema}.items")

    try:
        produce(kafka.bootstrap, config.topics.items, [(b"a", item_message("a", "v1"))])
        ingest_until(ingestor, lambda: item_text() == [("v1", 0)], "v1")
        produce(kafka.bootstrap, config.topics.items, [(b"a", item_message("a", "v2", priority=7))])
        ingest_until(ingestor, lambda: item_text() == [("v2", 7)], "the update to v2")

        task = store.claim("ann")
        assert task is not None and task.payload == {"text": "v2"}
        produce(kafka.bootstrap, config.topics.items, [(b"a", item_message("a", "v3"))])
        handle(ingestor, 1)
        assert item_text() == [("v2", 7)], "a leased item keeps what the labeler sees"
    finally:
        ingestor.close()
    with pool.connection() as conn:
        assert read_progress(conn, schema).items_total == 1


def test_a_message_the_database_refuses_fails_only_itself_in_a_large_batch(
    pool: ConnectionPool[Any], schema: str, config: WorkerConfig, kafka: KafkaConnection
) -> None:
    # Python's json takes a lone surrogate, jsonb does not: only the database can refuse it.
    refused = b'{"id": "bad", "payload": {"text": "\\ud800"}}'
    good = [(f"g{i}".encode(), item_message(f"g{i}")) for i in range(3000)]
    produce(kafka.bootstrap, config.topics.items, [*good[:1500], (b"bad", refused), *good[1500:]])
    ingestor = Ingestor(Pipeline(pool, config, kafka))
    try:
        handle(ingestor, len(good) + 1)
    finally:
        ingestor.close()
    assert count(pool, schema, "items") == len(good)
    [(key, reason)] = query(
        pool, schema, "SELECT convert_from(raw_key, 'UTF8'), reason FROM {schema}.dead_letters"
    )
    assert key == "bad" and "database refused the" in reason and "surrogate" in reason
    with pool.connection() as conn:
        counts = read_progress(conn, schema)
    assert (counts.items_total, counts.dead_lettered) == (len(good), 1)


# --- predictions ---------------------------------------------------------------------------


@pytest.fixture
def scored_config(config: WorkerConfig, kafka: KafkaConnection) -> WorkerConfig:
    """The campaign with its predictions topic."""
    predictions = unique_name("predictions")
    create_topics(kafka.bootstrap, predictions)
    topics = config.topics.model_copy(update={"predictions": predictions})
    return config.model_copy(update={"topics": topics})


def predictions_topic(config: WorkerConfig) -> str:
    assert config.topics.predictions is not None
    return config.topics.predictions


def scores(pool: ConnectionPool[Any], schema: str) -> dict[str, Any]:
    rows = query(
        pool,
        schema,
        "SELECT external_id, model_version, model_prediction ->> 'choice', model_confidence,"
        "       model_scored_at IS NOT NULL FROM {schema}.items",
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def test_predictions_apply_whether_they_come_before_or_after_their_items(
    pool: ConnectionPool[Any], schema: str, scored_config: WorkerConfig, kafka: KafkaConnection
) -> None:
    topics = scored_config.topics
    predictions = predictions_topic(scored_config)
    ingestor = Ingestor(Pipeline(pool, scored_config, kafka))
    try:
        produce(kafka.bootstrap, topics.items, [(b"after", item_message("after"))])
        produce(
            kafka.bootstrap,
            predictions,
            [(b"before", prediction_message("before", "v1", "helpful", 0.8))],
        )
        ingest_until(
            ingestor,
            lambda: (
                count(pool, schema, "early_predictions") == 1 and count(pool, schema, "items") == 1
            ),
            "the early prediction kept and the first item in",
        )
        assert scores(pool, schema) == {"after": (None, None, None, False)}
        produce(kafka.bootstrap, topics.items, [(b"before", item_message("before"))])
        produce(
            kafka.bootstrap,
            predictions,
            [(b"after", prediction_message("after", "v2", "unhelpful", 0.25))],
        )
        ingest_until(
            ingestor,
            lambda: (
                len(scores(pool, schema)) == 2 and all(s[0] for s in scores(pool, schema).values())
            ),
            "both scored",
        )
    finally:
        ingestor.close()
    assert scores(pool, schema) == {
        "before": ("v1", "helpful", 0.8, True),
        "after": ("v2", "unhelpful", 0.25, True),
    }
    assert count(pool, schema, "early_predictions") == 0, "an applied early prediction is gone"
    with pool.connection() as conn:
        assert read_progress(conn, schema).items_total == 2


def test_the_latest_prediction_of_an_item_wins_and_redelivery_changes_nothing(
    pool: ConnectionPool[Any], schema: str, scored_config: WorkerConfig, kafka: KafkaConnection
) -> None:
    predictions = predictions_topic(scored_config)
    produce(
        kafka.bootstrap,
        scored_config.topics.items,
        [(b"a", item_message("a", model=model("v0", "helpful", 0.1)))],
    )
    ingestor = Ingestor(Pipeline(pool, scored_config, kafka))
    try:
        ingest_until(ingestor, lambda: count(pool, schema, "items") == 1, "the item")
        assert scores(pool, schema) == {"a": ("v0", "helpful", 0.1, True)}
        produce(
            kafka.bootstrap,
            predictions,
            [
                (
                    b"a",
                    prediction_message("a", f"v{n}", "helpful" if n % 2 else "unhelpful", n / 10),
                )
                for n in range(1, 4)
            ],
        )
        handle(ingestor, 3)
        produce(
            kafka.bootstrap, predictions, [(b"a", prediction_message("a", "v4", "unhelpful", 0.4))]
        )
        handle(ingestor, 1)
        # The item message again (a re-read of the topic): its own older score stays out.
        produce(
            kafka.bootstrap,
            scored_config.topics.items,
            [(b"a", item_message("a", model=model("v0", "helpful", 0.1)))],
        )
        handle(ingestor, 1)
    finally:
        ingestor.close()
    assert scores(pool, schema) == {"a": ("v4", "unhelpful", 0.4, True)}


def test_bad_predictions_are_dead_lettered_with_the_reason(
    pool: ConnectionPool[Any], schema: str, scored_config: WorkerConfig, kafka: KafkaConnection
) -> None:
    predictions = predictions_topic(scored_config)
    good = prediction_message("a", "v1", "helpful", 0.5)
    bad = [
        (
            b"n",
            b'{"id": "n", "model": {"version": "v1", "prediction": {"choice": "helpful"},'
            b' "confidence": NaN}}',
        ),
        (
            b"i",
            b'{"id": "i", "model": {"version": "v1", "prediction": {"choice": "helpful"},'
            b' "confidence": 1e999}}',
        ),
        (b"o", prediction_message("o", "v1", "helpful", 1.5)),
        (b"m", prediction_message("m", "v1", "helpful", -0.5)),
        (b"c", prediction_message("c", "v1", "maybe", 0.5)),
        (b"v", prediction_message("v", "", "helpful", 0.5)),
        (b"s", json.dumps({"id": "s", "model": {"prediction": "helpful"}}).encode()),
        (b"k", prediction_message("other", "v1", "helpful", 0.5)),
    ]
    produce(kafka.bootstrap, scored_config.topics.items, [(b"a", item_message("a"))])
    produce(kafka.bootstrap, predictions, [*bad, (b"a", good)])
    ingestor = Ingestor(Pipeline(pool, scored_config, kafka))
    try:
        handle(ingestor, len(bad) + 2)
    finally:
        ingestor.close()
    reasons = dict(
        query(
            pool, schema, "SELECT convert_from(raw_key, 'UTF8'), reason FROM {schema}.dead_letters"
        )
    )
    assert "NaN is not a JSON number" in reasons["n"]
    assert "/model/confidence: inf is greater than the maximum of 1" in reasons["i"]
    assert "/model/confidence: 1.5 is greater than the maximum of 1" in reasons["o"]
    assert "/model/confidence: -0.5 is less than the minimum of 0" in reasons["m"]
    assert (
        "/model/prediction/choice: 'maybe' is not one of ['helpful', 'unhelpful']" in reasons["c"]
    )
    assert "/model/version: '' should be non-empty" in reasons["v"]
    assert "'version' is a required property" in reasons["s"]
    assert "message key 'k' does not match id 'other'" in reasons["k"]
    assert len(reasons) == len(bad)
    assert scores(pool, schema) == {"a": ("v1", "helpful", 0.5, True)}
    assert count(pool, schema, "early_predictions") == 0
    with pool.connection() as conn:
        assert read_progress(conn, schema).dead_lettered == len(bad)


def test_a_prediction_that_does_not_fit_its_item_is_dead_lettered(
    pool: ConnectionPool[Any], schema: str, kafka: KafkaConnection
) -> None:
    items, labels, predictions = unique_name("items"), unique_name("labels"), unique_name("p")
    create_topics(kafka.bootstrap, items, labels, predictions)
    base = make_config(
        schema,
        task={"type": "pairwise", "instructions": "Which is better?"},
        topics=(items, labels),
        consumer_group=unique_name("g"),
    )
    config = base.model_copy(
        update={"topics": base.topics.model_copy(update={"predictions": predictions})}
    )
    payload = {"prompt": "p", "responses": [{"id": "x", "text": "1"}, {"id": "y", "text": "2"}]}

    def pairwise(item_id: str, preferred: str) -> bytes:
        score = {"version": "v1", "prediction": {"preferred": preferred}, "confidence": 0.9}
        return json.dumps({"id": item_id, "model": score}).encode()

    produce(kafka.bootstrap, items, [(b"q", json.dumps({"id": "q", "payload": payload}).encode())])
    ingestor = Ingestor(Pipeline(pool, config, kafka))
    try:
        ingest_until(ingestor, lambda: count(pool, schema, "items") == 1, "the item")
        produce(
            kafka.bootstrap, predictions, [(b"q", pairwise("q", "z")), (b"q", pairwise("q", "y"))]
        )
        handle(ingestor, 2)
        produce(kafka.bootstrap, predictions, [(b"q", pairwise("q", "z"))])
        handle(ingestor, 1)
    finally:
        ingestor.close()
    [(reason,)] = query(pool, schema, "SELECT reason FROM {schema}.dead_letters")
    assert "prediction does not fit item 'q'" in reason
    assert "/model/prediction/preferred: 'z' is not one of 'x', 'y', 'tie'" in reason
    [(preferred,)] = query(
        pool, schema, "SELECT model_prediction ->> 'preferred' FROM {schema}.items"
    )
    assert preferred == "y", "the one that fits stays"


ACCEPTING = {
    "order": "uncertainty",
    "autoAccept": {
        "auditRate": 0.3,
        "targetAccuracy": 0.95,
        "confidenceLevel": 0.95,
        "brakeWindow": 20,
    },
}
THRESHOLD = 0.8
# Each write of an item row, by kind: what "one row version per scored item" is held to.
WRITE_COUNTER = [
    "CREATE TABLE {schema}.item_writes (item_id bigint NOT NULL, kind text NOT NULL)",
    "CREATE FUNCTION {schema}.count_item_write() RETURNS trigger LANGUAGE plpgsql AS"
    " $$BEGIN INSERT INTO {schema}.item_writes VALUES (NEW.id, TG_OP); RETURN NULL; END$$",
    "CREATE TRIGGER count_item_writes AFTER INSERT OR UPDATE ON {schema}.items"
    " FOR EACH ROW EXECUTE FUNCTION {schema}.count_item_write()",
]


def test_a_score_is_decided_in_the_one_write_that_applies_it(
    pool: ConnectionPool[Any], schema: str, scored_config: WorkerConfig, kafka: KafkaConnection
) -> None:
    """Under model.order uncertainty, audits at 30% and a trusted version: every way an item
    gets its score (its own model, an early prediction, a prediction after it) writes the
    row once, with the audit and claim rank after_scoring decides; auto-accept completes
    exactly the confident non-audits of the trusted version; a completed item takes the
    score but keeps its audit and rank; a new version is registered."""
    config = scored_config.model_copy(update={"model": ModelSpec.model_validate(ACCEPTING)})
    LabelStore(pool, config).sync_policy()
    for statement in [
        *WRITE_COUNTER,
        "INSERT INTO {schema}.model_versions (version, trusted, threshold)"
        f" VALUES ('v1', true, {THRESHOLD})",
    ]:
        query_none(pool, schema, statement)
    rng = random.Random(14)
    scores = {
        **{f"own-{n}": ("v1", 0.5 + 0.5 * rng.random()) for n in range(30)},
        **{f"early-{n}": ("v1", 0.5 + 0.5 * rng.random()) for n in range(30)},
        **{f"after-{n}": ("v1", 0.5 + 0.5 * rng.random()) for n in range(30)},
        **{f"new-{n}": ("v2", 0.5 + 0.5 * rng.random()) for n in range(10)},
    }

    def predicted(item_id: str) -> tuple[bytes, bytes]:
        version, confidence = scores[item_id]
        return item_id.encode(), prediction_message(item_id, version, "helpful", confidence)

    predictions = predictions_topic(config)
    own, early = [i for i in scores if i.startswith("own-")], [i for i in scores if "early" in i]
    later = [i for i in scores if i.startswith(("after-", "new-"))]
    ingestor = Ingestor(Pipeline(pool, config, kafka))
    try:
        produce(kafka.bootstrap, predictions, [predicted(i) for i in early])
        handle(ingestor, len(early))
        assert count(pool, schema, "early_predictions") == len(early)
        produce(
            kafka.bootstrap,
            config.topics.items,
            [
                *(
                    (
                        i.encode(),
                        item_message(i, model=model(scores[i][0], "helpful", scores[i][1])),
                    )
                    for i in own
                ),
                *((i.encode(), item_message(i)) for i in [*early, *later, "done"]),
            ],
        )
        handle(ingestor, len(own) + len(early) + len(later) + 1)
        # An item people completed (audit and rank set apart to see them kept).
        query_none(
            pool,
            schema,
            "UPDATE {schema}.items SET completed_at = now(), label_count = 1, audit = true,"
            " claim_rank = 7 WHERE external_id = 'done'",
        )
        produce(
            kafka.bootstrap,
            predictions,
            [
                *(predicted(i) for i in later),
                (b"done", prediction_message("done", "v1", "helpful", 0.9)),
            ],
        )
        handle(ingestor, len(later) + 1)
    finally:
        ingestor.close()

    rows = query(
        pool,
        schema,
        "SELECT i.external_id, i.model_version, i.model_confidence, i.audit, i.claim_rank,"
        "       i.machine_labeled, count(w.*) FILTER (WHERE w.kind = 'UPDATE')"
        " FROM {schema}.items i LEFT JOIN {schema}.item_writes w ON w.item_id = i.id"
        " GROUP BY i.id",
    )
    items = {row[0]: row[1:] for row in rows}
    assert items["done"] == ("v1", 0.9, True, 7.0, False, 2), "the score, nothing else"
    accepted = set()
    for item_id, (version, confidence) in scores.items():
        got_version, got_confidence, audit, rank, machine, updates = items[item_id]
        assert (got_version, got_confidence) == (version, confidence), item_id
        assert audit is (unit_hash(AUDIT_DOMAIN, item_id, version) < 0.3), item_id
        assert rank == (confidence - 2 if audit else confidence + 1), item_id
        if version == "v1" and confidence >= THRESHOLD and not audit:
            accepted.add(item_id)
        assert machine is (item_id in accepted), item_id
        # Scored as it was inserted, or by one update; completing it is one more.
        assert updates == int(item_id in later) + int(item_id in accepted), item_id
    audits = sum(1 for row in rows if row[3])
    assert 0 < audits < len(scores) and 0 < len(accepted) < len(scores)
    assert {
        row[0] for row in query(pool, schema, "SELECT version FROM {schema}.model_versions")
    } == {"v1", "v2"}
    with pool.connection() as conn:
        assert read_progress(conn, schema).machine_labeled == len(accepted)

    # after_scoring, on the same items, decides nothing else (the reference; rolled back).
    decided = "SELECT external_id, audit, claim_rank FROM {schema}.items ORDER BY id"
    with pool.connection() as conn, conn.transaction(force_rollback=True):
        before = conn.execute(sql.SQL(decided).format(schema=sql.Identifier(schema))).fetchall()
        row = conn.execute(
            sql.SQL(
                "SELECT {schema}.after_scoring(array_agg(id), 0::smallint) FROM {schema}.items"
                " WHERE external_id <> 'done'"
            ).format(schema=sql.Identifier(schema))
        ).fetchone()
        after = conn.execute(sql.SQL(decided).format(schema=sql.Identifier(schema))).fetchall()
    assert row == (0,) and after == before


def query_none(pool: ConnectionPool[Any], schema: str, template: str) -> None:
    with pool.connection() as conn:
        conn.execute(sql.SQL(template).format(schema=sql.Identifier(schema)))


def test_gold_items_keep_their_answer_and_bad_gold_is_dead_lettered(
    pool: ConnectionPool[Any], schema: str, config: WorkerConfig, kafka: KafkaConnection
) -> None:
    produce(
        kafka.bootstrap,
        config.topics.items,
        [
            (b"g", item_message("g", gold={"value": {"choice": "helpful"}})),
            (b"w", item_message("w", gold={"value": {"choice": "maybe"}})),
            (b"e", item_message("e", gold={"answer": "helpful"})),
            (b"plain", item_message("plain")),
        ],
    )
    ingestor = Ingestor(Pipeline(pool, config, kafka))
    try:
        handle(ingestor, 4)
    finally:
        ingestor.close()
    gold = dict(query(pool, schema, "SELECT external_id, gold_value FROM {schema}.items"))
    assert gold == {"g": {"choice": "helpful"}, "plain": None}
    reasons = dict(
        query(
            pool, schema, "SELECT convert_from(raw_key, 'UTF8'), reason FROM {schema}.dead_letters"
        )
    )
    assert "/gold/value/choice: 'maybe' is not one of" in reasons["w"]
    assert "/gold: 'value' is a required property" in reasons["e"]


def test_one_batch_of_predictions_applies_keeps_and_refuses_each_by_its_item(
    pool: ConnectionPool[Any], schema: str
) -> None:
    """One statement, four fates: a new score for a known item is applied, the same score
    again writes nothing, a score for an item not there yet is kept for it, a score that
    does not fit its item is reported with the item's responses."""
    from labelops.api.campaign import TaskType
    from labelops.store.items import (
        RawItem,
        RawPrediction,
        lock_arrivals,
        statements_for,
        upsert_items,
        upsert_predictions,
    )

    statements = statements_for(schema, TaskType.PAIRWISE)
    payload = {"prompt": "p", "responses": [{"id": "x", "text": "1"}, {"id": "y", "text": "2"}]}

    def scored(item_id: str, preferred: str, version: str = "v1") -> RawPrediction:
        score = {"version": version, "prediction": {"preferred": preferred}, "confidence": 0.7}
        return RawPrediction(item_id, json.dumps({"id": item_id, "model": score}).encode())

    known = [
        RawItem(i, json.dumps({"id": i, "payload": payload}).encode())
        for i in ("new", "same", "unfit")
    ]
    with pool.connection() as conn, conn.cursor() as cur:
        lock_arrivals(cur, statements, items=[i.id for i in known])
        upsert_items(cur, statements, known)
        lock_arrivals(cur, statements, predictions=["same"])
        assert len(upsert_predictions(cur, statements, [scored("same", "x", "v0")]).scored_ids) == 1
    batch = [
        scored("new", "y"),
        scored("same", "x", "v0"),
        scored("early", "x"),
        scored("unfit", "z"),
    ]
    with pool.connection() as conn, conn.cursor() as cur:
        lock_arrivals(cur, statements, predictions=[p.id for p in batch])
        outcome = upsert_predictions(cur, statements, batch)
    ids = dict(query(pool, schema, "SELECT external_id, id FROM {schema}.items"))
    assert outcome.scored_ids == [ids["new"]]
    assert outcome.early == 1
    assert [(u.item_id, u.response_ids) for u in outcome.unfit] == [("unfit", ["x", "y"])]
    assert dict(query(pool, schema, "SELECT external_id, model_version FROM {schema}.items")) == {
        "new": "v1",
        "same": "v0",
        "unfit": None,
    }
    assert query(pool, schema, "SELECT external_id FROM {schema}.early_predictions") == [("early",)]
