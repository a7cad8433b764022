"""Proof that the stack's Kafka and PostgreSQL are real servers doing real work."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql
from psycopg.conninfo import make_conninfo

from labelops.api.kafka_connection import KafkaConnection

pytestmark = pytest.mark.integration

QUIET = {"log_level": 0}  # librdkafka would print every transient connection hiccup


@pytest.fixture
def topic(kafka: KafkaConnection) -> Iterator[str]:
    admin = AdminClient(kafka.client_config(QUIET))
    name = f"smoke-{uuid.uuid4().hex[:12]}"
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


def _poll_one(consumer: Consumer, timeout: float) -> Message:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        return msg
    raise AssertionError(f"no message within {timeout}s")


def test_kafka_produce_and_consume(kafka: KafkaConnection, topic: str) -> None:
    producer = Producer(kafka.client_config({"acks": "all", **QUIET}))
    producer.produce(topic, key=b"task-1", value=b'{"label": "cat"}')
    assert producer.flush(30) == 0

    consumer = Consumer(
        kafka.client_config(
            {
                "group.id": f"smoke-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                **QUIET,
            }
        )
    )
    try:
        consumer.subscribe([topic])
        msg = _poll_one(consumer, timeout=60)
        assert (msg.key(), msg.value()) == (b"task-1", b'{"label": "cat"}')
        consumer.commit(message=msg, asynchronous=False)
    finally:
        consumer.close()


def test_kafka_does_not_create_topics_on_demand(kafka: KafkaConnection) -> None:
    """The operator owns topic creation: a producer's typo must fail, not make a topic."""
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    errors: list[KafkaError | None] = []
    producer = Producer(kafka.client_config({"message.timeout.ms": 3000, **QUIET}))
    producer.produce(missing, value=b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(15)
    assert errors and errors[0] is not None
    admin = AdminClient(kafka.client_config(QUIET))
    assert missing not in admin.list_topics(timeout=10).topics


@pytest.fixture
def tenant(postgres_dsn: str) -> Iterator[dict[str, str]]:
    """A role that owns one schema, plus a second schema it was never granted."""
    suffix = uuid.uuid4().hex[:10]
    names = {
        "role": f"smoke_role_{suffix}",
        "password": uuid.uuid4().hex,
        "own": f"smoke_own_{suffix}",
        "other": f"smoke_other_{suffix}",
    }
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(names["role"]), sql.Literal(names["password"])
            )
        )
        admin.execute(
            sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                sql.Identifier(names["own"]), sql.Identifier(names["role"])
            )
        )
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(names["other"])))
        admin.execute(
            sql.SQL("CREATE TABLE {}.secrets (v text)").format(sql.Identifier(names["other"]))
        )
    yield names
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        for schema in (names["own"], names["other"]):
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(names["role"])))


def test_postgres_role_uses_own_schema_only(postgres_dsn: str, tenant: dict[str, str]) -> None:
    dsn = make_conninfo(postgres_dsn, user=tenant["role"], password=tenant["password"])
    own = sql.Identifier(tenant["own"])
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (tenant["role"],)
        conn.execute(sql.SQL("CREATE TABLE {}.labels (id int, label text)").format(own))
        conn.execute(sql.SQL("INSERT INTO {}.labels VALUES (1, 'cat')").format(own))
        rows = conn.execute(sql.SQL("SELECT id, label FROM {}.labels").format(own)).fetchall()
        assert rows == [(1, "cat")]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                sql.SQL("SELECT * FROM {}.secrets").format(sql.Identifier(tenant["other"]))
            )


def test_postgres_checks_passwords(postgres_dsn: str, tenant: dict[str, str]) -> None:
    dsn = make_conninfo(postgres_dsn, user=tenant["role"], password="wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn, connect_timeout=5)
