"""`labelops learner` as its own process on the real Kafka, configured by the environment alone:
SMS spam items and human labels in, predictions out; killed and restarted, it rebuilds from
the topics and never publishes a version older than one it published before.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from worker_harness import wait_for

from devstack.datasets import datasets_dir
from devstack.kafka import client_connection
from labelops.learner.main import EXIT_NOT_SUPPORTED
from labelops.learner.versions import labels_of

pytestmark = pytest.mark.integration

SMS = datasets_dir() / "sms_spam" / "texts.csv"
PARTITIONS = 2
ITEMS = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def sms_rows(n: int) -> list[dict[str, str]]:
    seen: set[str] = set()
    rows = []
    with SMS.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["text"] not in seen:
                seen.add(row["text"])
                rows.append(row)
            if len(rows) == n:
                break
    return rows


class Topics:
    """Three uniquely named topics of one test campaign, deleted afterwards."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        prefix = f"labelops-test.learner-{uuid.uuid4().hex[:8]}"
        self.items, self.labels, self.predictions = (
            f"{prefix}.{kind}" for kind in ("items", "labels", "predictions")
        )
        self.admin = AdminClient(client_connection(bootstrap).client_config())
        futures = self.admin.create_topics(
            [NewTopic(t, PARTITIONS, 1) for t in (self.items, self.labels, self.predictions)]
        )
        for future in futures.values():
            future.result(30)
        self.producer = Producer(client_connection(bootstrap).client_config({"acks": "all"}))

    def produce(self, topic: str, messages: list[tuple[str, dict[str, Any]]]) -> None:
        for key, value in messages:
            self.producer.produce(topic, key=key.encode(), value=json.dumps(value).encode())
        assert self.producer.flush(30) == 0

    def predictions_read(self) -> Iterator[tuple[tuple[int, int], bytes, dict[str, Any]]]:
        """Every message on the predictions topic so far, from the beginning, with its
        (partition, offset)."""
        consumer = Consumer(
            client_connection(self.bootstrap).client_config(
                {
                    "group.id": f"{self.predictions}.test",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                }
            )
        )
        try:
            consumer.assign(
                [TopicPartition(self.predictions, p, OFFSET_BEGINNING) for p in range(PARTITIONS)]
            )
            ends = 0
            while ends < PARTITIONS:
                message = consumer.poll(5.0)
                if message is None:
                    raise AssertionError("the predictions topic did not answer within 5 s")
                if message.error():
                    ends += 1
                    continue
                key, partition, offset = message.key(), message.partition(), message.offset()
                assert key is not None and partition is not None and offset is not None
                yield (partition, offset), key, json.loads(message.value() or b"null")
        finally:
            consumer.close()

    def delete(self) -> None:
        for future in self.admin.delete_topics(
            [self.items, self.labels, self.predictions]
        ).values():
            future.result(30)


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[Topics]:
    created = Topics(kafka_bootstrap)
    try:
        yield created
    finally:
        created.delete()


class LearnerProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labelops.cli", "learner"],
            env={
                **os.environ,
                **env,
                "LABELOPS_LEARNER_PORT": str(self.port),
                "LABELOPS_LEARNER_HOST": "127.0.0.1",
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> requests.Response | None:
        if self.process.poll() is not None:
            raise AssertionError(f"learner exited with {self.process.returncode}:\n{self.log()}")
        try:
            return requests.get(f"{self.url}{path}", timeout=2)
        except requests.ConnectionError:
            return None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self._log.close()


def learner_env(topics: Topics, task: dict[str, Any]) -> dict[str, str]:
    return {
        "LABELOPS_KAFKA_BOOTSTRAP": topics.bootstrap,
        **client_connection(topics.bootstrap).security_env(),
        "LABELOPS_LEARNER_CAMPAIGN": "learner-test/sms",
        "LABELOPS_LEARNER_TASK": json.dumps(task),
        "LABELOPS_LEARNER_ITEMS_TOPIC": topics.items,
        "LABELOPS_LEARNER_LABELS_TOPIC": topics.labels,
        "LABELOPS_LEARNER_PREDICTIONS_TOPIC": topics.predictions,
        "LABELOPS_LEARNER_RETRAIN_LABELS": "20",
        "LABELOPS_LEARNER_RETRAIN_SECONDS": "3",
    }


def label(item_id: str, choice: str, origin: str = "human", label_id: str | None = None) -> Any:
    return (
        item_id,
        {
            "labelId": label_id or str(uuid.uuid4()),
            "campaign": {"namespace": "learner-test", "name": "sms"},
            "itemId": item_id,
            "labeler": "alice" if origin == "human" else "model:other",
            "origin": origin,
            "value": {"choice": choice},
            "ordinal": 1,
            "labelsPerItem": 1,
            "createdAt": "2026-12-01T00:00:00Z",
        },
    )


def latest_by_item(topics: Topics) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for _, key, value in topics.predictions_read():
        assert key.decode() == value["id"]
        latest[value["id"]] = value
    return latest


def versions_published(topics: Topics) -> dict[tuple[int, int], str]:
    """The version of every prediction published so far, by (partition, offset)."""
    return {where: value["model"]["version"] for where, _, value in topics.predictions_read()}


def test_learner_publishes_predictions_and_a_restart_never_goes_back(
    topics: Topics, tmp_path: Path
) -> None:
    rows = sms_rows(ITEMS)
    truth = {r["id"]: r["label"] for r in rows}
    topics.produce(
        topics.items, [(r["id"], {"id": r["id"], "payload": {"text": r["text"]}}) for r in rows]
    )
    first, later = rows[:60], rows[60:80]
    duplicate = label(first[0]["id"], first[0]["label"], label_id="relayed-twice")
    topics.produce(
        topics.labels,
        [label(r["id"], r["label"]) for r in first]
        + [duplicate]  # the same labelId again: counted once
        + [label(r["id"], "spam", origin="machine") for r in rows[100:120]],  # never learned
    )
    env = learner_env(
        topics, {"type": "classification", "instructions": "Spam?", "choices": ["ham", "spam"]}
    )
    learner = LearnerProcess(env, tmp_path / "learner.log")
    try:
        unlabeled = {r["id"] for r in rows[60:]}

        def scored_by(version: str) -> Callable[[], bool]:
            def check() -> bool:
                learner.get("/healthz")  # fails the test at once if the learner died
                latest = latest_by_item(topics)
                return {i for i, v in latest.items() if v["model"]["version"] == version} >= (
                    unlabeled
                )

            return check

        wait_for(scored_by("builtin-000000061"), 90, learner.log)
        latest = latest_by_item(topics)
        assert set(latest) == unlabeled  # nothing for items people labeled
        for value in latest.values():
            assert set(value) == {"id", "model"}
            model = value["model"]
            assert set(model) == {"version", "prediction", "confidence"}
            assert model["prediction"]["choice"] in ("ham", "spam")
            assert set(model["prediction"]) == {"choice"}
            assert 0.5 <= model["confidence"] <= 1.0  # two classes: the chosen one's probability
        choices = [v["model"]["prediction"]["choice"] for v in latest.values()]
        accuracy = sum(latest[i]["model"]["prediction"]["choice"] == truth[i] for i in latest)
        assert accuracy / len(latest) >= 0.85, choices  # 61 labels; ham alone would be ~0.87
        ready = learner.get("/readyz")
        assert ready is not None and ready.status_code == 200, ready and ready.text
        assert ready.json()["version"] == "builtin-000000061"
        metrics = learner.get("/metrics")
        assert metrics is not None
        assert "labelops_learner_labels_trained_on 61.0" in metrics.text
        assert 'labelops_learner_model_info{version="builtin-000000061"} 1.0' in metrics.text

        # 20 new labels: a retrain, and the items they label drop out of the scoring.
        topics.produce(topics.labels, [label(r["id"], r["label"]) for r in later])
        unlabeled -= {r["id"] for r in later}
        wait_for(scored_by("builtin-000000081"), 90, learner.log)
        published_before = versions_published(topics)
        newest_before = max(published_before.values())
    finally:
        learner.kill()

    restarted = LearnerProcess(env, tmp_path / "learner.log")
    try:

        def published_after_restart() -> list[str]:
            restarted.get("/healthz")
            published = versions_published(topics)
            return [v for where, v in published.items() if where not in published_before]

        wait_for(lambda: len(published_after_restart()) >= len(unlabeled), 90, restarted.log)
        after = published_after_restart()
        assert min(after) >= newest_before, (newest_before, sorted(set(after)))
        assert labels_of(min(after)) == 81  # the same labels: the same version
    finally:
        restarted.kill()


def test_a_task_type_without_a_builtin_model_exits_with_not_supported(
    topics: Topics, tmp_path: Path
) -> None:
    env = learner_env(topics, {"type": "ranking", "instructions": "Order them."})
    learner = LearnerProcess(env, tmp_path / "learner.log")
    try:
        assert learner.process.wait(30) == EXIT_NOT_SUPPORTED
    finally:
        learner.kill()
    assert "NotSupported" in learner.log()
    assert "task.type='ranking'" in learner.log()


def test_the_reader_is_caught_up_only_once_it_read_every_partition_to_its_end(
    topics: Topics,
) -> None:
    from labelops.learner.kafka_io import TopicReader

    topics.produce(topics.items, [(f"k{n}", {"n": n}) for n in range(40)])
    reader = TopicReader(
        client_connection(topics.bootstrap).client_config(),
        [topics.items, topics.labels],
        "reader-test",
    )
    try:
        reader.assign_new_partitions()
        assert reader.missing_topics == []
        read: list[int] = []
        deadline = time.monotonic() + 30
        while len(read) < 40:
            assert not reader.caught_up, f"caught up after {len(read)} of 40 messages"
            read += [json.loads(m.value() or b"")["n"] for m in reader.poll(5, 0.5)]
            assert time.monotonic() < deadline, f"read {len(read)} of 40 in 30 s"
        assert sorted(read) == list(range(40))  # from the beginning, each once
        wait_for(lambda: reader.poll(5, 0.2) == [] and reader.caught_up, 10, lambda: "")
    finally:
        reader.close()


def test_pairwise_predictions_name_one_of_the_items_responses(
    topics: Topics, tmp_path: Path
) -> None:
    def payload(n: int) -> dict[str, Any]:
        good = f"A careful answer with steps, caveats and a source, number {n}."
        texts = [good, "dunno"] if n % 2 else ["dunno", good]
        return {
            "prompt": f"Question {n}?",
            "responses": [
                {"id": f"{n}-{side}", "text": t} for side, t in zip("ab", texts, strict=True)
            ],
        }

    items = {f"pair-{n:02d}": payload(n) for n in range(40)}
    topics.produce(topics.items, [(i, {"id": i, "payload": p}) for i, p in items.items()])
    labeled = sorted(items)[:20]
    topics.produce(
        topics.labels,
        [
            (
                i,
                {
                    "labelId": str(uuid.uuid4()),
                    "itemId": i,
                    "origin": "human",
                    "value": {
                        "preferred": items[i]["responses"][0 if int(i[-2:]) % 2 else 1]["id"]
                    },
                },
            )
            for i in labeled
        ],
    )
    learner = LearnerProcess(learner_env(topics, {"type": "pairwise"}), tmp_path / "learner.log")
    try:
        unlabeled = set(items) - set(labeled)

        def all_scored() -> bool:
            learner.get("/healthz")
            return set(latest_by_item(topics)) >= unlabeled

        wait_for(all_scored, 90, learner.log)
        for item_id, value in latest_by_item(topics).items():
            model = value["model"]
            assert model["version"] == "builtin-000000020"
            good = next(r["id"] for r in items[item_id]["responses"] if r["text"] != "dunno")
            assert model["prediction"] == {"preferred": good}
            assert 0.0 <= model["confidence"] <= 1.0
    finally:
        learner.kill()
