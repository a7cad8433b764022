"""Hostile input through both doors, on real Kafka and real PostgreSQL: item ids and label
values carrying SQL, format placeholders, NUL bytes, 1 MiB strings and deep nesting are either
stored verbatim or refused with the field named (a dead letter for ingest, a 4xx problem
detail for the HTTP API), never executed, never a 5xx, and the campaign's tables are intact
afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg_pool import ConnectionPool
from test_store_support import make_config, migrated_schema, open_pool, query, unique_name, wait_for
from test_worker_api import labels_url, path_segment
from worker_harness import campaign_config, live_api, provisioned

from devstack.kafka import client_connection
from labelops.api.kafka_connection import KafkaConnection
from labelops.store.items import ItemRecord
from labelops.worker.http.app import MAX_BODY_BYTES
from labelops.worker.ingest import Ingestor
from labelops.worker.ingest_messages import MAX_ID_LENGTH
from labelops.worker.pipeline import Pipeline

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
PROBLEM = "application/problem+json"
SQL = "x'); DROP TABLE items; --"
SQL_TOO = 'r"); DROP SCHEMA public CASCADE; SELECT pg_sleep(30); --'
PLACEHOLDERS = "%s %(id)s {schema} $1 \\x00 \\u0000 ${jndi:ldap://x}"
MARKUP = "<img src=x onerror=alert(1)><script>alert(2)</script>"
# Ids that are hostile but valid: each must be stored and served exactly as sent.
VERBATIM_IDS = [SQL, PLACEHOLDERS, MARKUP, "ünï\u202ecode/../%2e%2e?#&"]


def deep(levels: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


def deep_json(levels: int) -> str:
    """Nesting too deep for a recursive parser to build, written without one."""
    return "[" * levels + "]" * levels


# --- ingest from Kafka -------------------------------------------------------------------


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    with migrated_schema(postgres_dsn, "hostile") as name:
        yield name


@pytest.fixture
def pool(postgres_dsn: str) -> Iterator[ConnectionPool[Any]]:
    with open_pool(postgres_dsn) as opened:
        yield opened


def big_message_topics(bootstrap: str, *names: str) -> None:
    """Topics that take messages of a few MiB (Kafka's default stops at 1 MB), so a 1 MiB
    string reaches the worker rather than being refused by the broker."""
    admin = AdminClient(client_connection(bootstrap).client_config())
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=1,
                replication_factor=1,
                config={"max.message.bytes": str(4 * MIB)},
            )
            for name in names
        ]
    )
    for future in futures.values():
        future.result(timeout=30)


def test_hostile_items_from_kafka_are_stored_verbatim_or_dead_lettered_naming_the_field(
    pool: ConnectionPool[Any], schema: str, kafka: KafkaConnection
) -> None:
    items, labels = unique_name("items"), unique_name("labels")
    big_message_topics(kafka.bootstrap, items, labels)
    config = make_config(schema, topics=(items, labels), consumer_group=unique_name("group"))

    def message(item_id: str, payload: Any) -> tuple[bytes, bytes]:
        return item_id.encode(), json.dumps({"id": item_id, "payload": payload}).encode()

    megabyte_text = "\u00e9" + "a" * (MIB - 1)
    stored = {
        **{item_id: {"text": f"{SQL_TOO} {MARKUP}"} for item_id in VERBATIM_IDS},
        "megabyte": {"text": megabyte_text},
        "nested-but-fine": {"text": "t", "extra": deep(50)},
    }
    refused: dict[str, tuple[tuple[bytes | None, bytes], str]] = {
        "nul-id": (message("a\u0000b", {"text": "t"}), "/id"),
        "nul-text": (message("nul-text", {"text": "a\u0000b"}), "/payload/text"),
        "nul-key": (message("nul-key", {"text": "t", "k\u0000": 1}), "/payload"),
        "long-id": (message("i" * MIB, {"text": "t"}), "/id"),
        "deep": (message("deep", {"text": "t", "extra": deep(200)}), "nests deeper"),
        "deeper": (
            (
                b"deeper",
                b'{"id": "deeper", "payload": {"text": "t", "x": '
                + deep_json(100_000).encode()
                + b"}}",
            ),
            "nests too deeply",
        ),
        "sql-key": (((SQL + "'").encode(), message(SQL, {"text": "t"})[1]), "does not match id"),
    }
    producer = Producer(
        {**client_connection(kafka.bootstrap).client_config(), "message.max.bytes": 4 * MIB}
    )
    for key, value in [
        *(message(i, p) for i, p in stored.items()),
        *(m for m, _ in refused.values()),
    ]:
        producer.produce(items, key=key, value=value)
    assert producer.flush(30) == 0, "the test's messages were not all delivered"

    ingestor = Ingestor(Pipeline(pool, config, kafka))
    handled = 0

    def all_handled() -> bool:
        nonlocal handled
        handled += ingestor.poll_once(timeout=0.5)
        return handled >= len(stored) + len(refused)

    try:
        wait_for(all_handled, 90, "every hostile message ingested or dead-lettered")
    finally:
        ingestor.close()

    rows = dict(query(pool, schema, "SELECT external_id, payload FROM {schema}.items"))
    assert rows == stored, "an item was not stored exactly as sent"
    reasons = {
        bytes(key): reason
        for key, reason in query(pool, schema, "SELECT raw_key, reason FROM {schema}.dead_letters")
    }
    assert len(reasons) == len(refused), sorted(reasons.values())
    for name, ((key, _), names_field) in refused.items():
        assert key is not None
        reason = reasons[key]
        assert names_field in reason, (name, names_field, reason[:300])
        assert "database refused" not in reason, (name, reason[:300])
        assert len(reason) <= 4000, f"{name}: the dead letter's reason echoes the whole value"
    # Nothing ran: the tables the SQL named are all there.
    assert query(pool, schema, "SELECT count(*) FROM {schema}.items")[0][0] == len(stored)


# --- the HTTP API ------------------------------------------------------------------------


FREE_TEXT = {"type": "free-text", "maxLength": 100_000}


@pytest.fixture
def served(postgres_dsn: str, kafka_bootstrap: str) -> Iterator[Any]:
    config = campaign_config(unique_name("hostile"), FREE_TEXT, items=len(VERBATIM_IDS))
    with provisioned(postgres_dsn, kafka_bootstrap, config) as campaign:
        campaign.seed([ItemRecord(i, {"prompt": f"{SQL_TOO} {MARKUP}"}) for i in VERBATIM_IDS])
        with live_api(campaign) as api:
            yield campaign, api


def refused_naming(response: requests.Response, *fields: str) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code and body["title"] and body["detail"]
    text = json.dumps(body)
    for field in fields:
        assert field in text, f"the problem does not name {field!r}: {text[:500]}"
    assert len(text) < 16_384, "the problem echoes the hostile value"
    return body


def test_hostile_ids_and_label_values_over_http_are_stored_verbatim_or_refused(
    served: Any,
) -> None:
    campaign, api = served
    alice = api.session("alice")
    labeled: dict[str, str] = {}

    def post(item_id: str, data: bytes | str, **headers: str) -> requests.Response:
        return alice.post(
            labels_url(api, item_id),
            data=data,
            headers={"Content-Type": "application/json", **headers},
        )

    claimed = []
    for _ in VERBATIM_IDS:
        response = alice.post(f"{api.url}/v1/tasks/claim")
        assert response.status_code == 200, response.text
        claimed.append(response.json())
    assert sorted(task["id"] for task in claimed) == sorted(VERBATIM_IDS)
    assert all(task["payload"]["prompt"] == f"{SQL_TOO} {MARKUP}" for task in claimed)

    first, *others = (task["id"] for task in claimed)
    # Refused, naming the field, before anything is stored.
    refused_naming(post(first, json.dumps({"value": {"text": "a\u0000b"}})), "/value/text")
    refused_naming(post(first, json.dumps({"value": {"text": "t" * 200_000}})), "/value/text")
    refused_naming(post(first, json.dumps({"value": {"text": "ok", "x": deep(200)}})), "/value")
    refused_naming(post(first, json.dumps({"value": {"text": "ok", SQL: 1}})), "/value")
    for levels in (900, 2_000, 100_000):  # below, near and far beyond Python's recursion limit
        refused_naming(post(first, '{"value": {"text": "ok", "x": ' + deep_json(levels) + "}}"))
        refused_naming(post(first, '{"value": {"text": "ok"}, "x": ' + deep_json(levels) + "}"))
    refused_naming(post(first, b'{"value": {"text": "\xff\xfe"}}'))
    refused_naming(post(first, json.dumps({"value": {"text": "x" * (MIB + 1)}})))
    assert len(json.dumps({"value": {"text": "x" * (MIB + 1)}})) > MAX_BODY_BYTES
    refused_naming(
        post(first, json.dumps({"value": {"text": "ok"}}), **{"Idempotency-Key": "k" * 10_000}),
        "Idempotency-Key",
    )
    # Ids that name no item: a 404 problem, whatever they carry.
    for missing in ("a\u0000b", SQL + "'", "i" * (MAX_ID_LENGTH + 1), "%00"):
        response = alice.post(
            f"{api.url}/v1/tasks/{path_segment(missing)}/labels", json={"value": {"text": "t"}}
        )
        refused_naming(response)
    response = alice.post(f"{api.url}/v1/tasks/a%00b/release")
    refused_naming(response)

    # An Idempotency-Key with SQL in it (spaces are not allowed in one) is just a key.
    refused_naming(
        post(first, json.dumps({"value": {"text": "ok"}}), **{"Idempotency-Key": SQL}),
        "Idempotency-Key",
    )
    # Accepted and stored exactly as sent.
    texts = [SQL_TOO, PLACEHOLDERS, MARKUP, "\u00e9" * 90_000]
    for n, (item_id, text) in enumerate(zip([first, *others], texts, strict=True)):
        key = f"x');DROP-TABLE-labels;--{n}"
        response = post(item_id, json.dumps({"value": {"text": text}}), **{"Idempotency-Key": key})
        assert response.status_code == 201, response.text
        labeled[item_id] = text

    stored = dict(
        query(
            campaign.pool,
            campaign.config.schema_,
            "SELECT i.external_id, l.value->>'text' FROM {schema}.labels l"
            " JOIN {schema}.items i ON i.id = l.item_id",
        )
    )
    assert stored == labeled
    assert query(campaign.pool, campaign.config.schema_, "SELECT count(*) FROM {schema}.items")[0][
        0
    ] == len(VERBATIM_IDS)
