"""Data quality on real crowd answers, replayed through the worker's HTTP API (issue 11).

    LABELOPS_POSTGRES_DSN=... LABELOPS_KAFKA_BOOTSTRAP=... python bench/bench_crowd_replay.py
    (without them, the local stack is started, or reused, with devstack)

bench_consolidation.py measures consolidation and adaptive overlap offline; this replays the
same answers through the real system, as a crowd of real clients would reach it:

  * one classification campaign per dataset and mode (choices: the dataset's label codes),
    its schema migrated, its topics created and a `labelops worker` process serving it,
    every dataset worker a labeler with a bearer token (LABELOPS_TOKEN_<worker>);
  * every item produced to the items topic (payload {"text": ...}); a fixed random 10% of
    the items (bench_consolidation's gold_items, same seed) carry their true answer as
    "gold": {"value": ...} and do not count as data; quality.gold is on with its defaults
    (rate 0.1, onboarding 5, minAnswers 10, minAccuracy 0.8);
  * every labeler is a coroutine on its own keep-alive connection: it claims
    (POST /v1/tasks/claim); an item it answered in the dataset gets that answer
    (POST /v1/tasks/ID/labels?next=true, whose receipt carries the next task), any other
    item is released (POST /v1/tasks/ID/release, which the worker remembers as a skip). A
    labeler stops when it has given all its answers, when the worker blocks it (403), or
    when the worker has nothing for it (204) and nobody else changes anything: idle
    labelers wait for another labeler's submission or release, and when every labeler is
    idle they all try once more after GRACE_SECONDS (the quality job, every 2 s, may
    reopen items of a blocked labeler); nothing new then ends the run;
  * modes: `all` (labelsPerItem = every answer of an item, no overlap), `all-unblocked`
    (the same with every labeler in spec.labelers.unblocked: gold answers scored, nobody
    blocked, so every answer can count) and `adaptive`
    (quality.overlap {min 2, max 7, agreement 0.95}, labelsPerItem 7; max is cut to the
    answers an item has, so D_Product's 3 answers give {min 2, max 3}).

Then the worker is stopped (SIGTERM) and the campaign read: the consolidated labels of
`labelops export --format consolidated` (report/export.py's write_export, in this process,
on the campaign's schema: completed non-gold items, counted labels only) for majority,
weighted and dawid-skene, scored against the truth; the same methods over the counted labels
of every non-gold item (completed or not); human labels per non-gold item; gold answers;
labelers blocked; items that never reached their rule (not completed); wall time of the
replay. Published figures (crowd-kit, Ustalov et al., JOSS 9(96) 2024) are over every item
of the dataset; ours are over the 90% that are not gold.

The replays are bounded. A claim walks the open items in the worker's order past those the
labeler already labeled or released, so a labeler's claims cost in proportion to the open
items it passed, and a replay in proportion to labelers x open items x items walked: with
every answer (labelsPerItem 20 on D_PosSent, nothing completes until its 20th answerer came
by) the full 1,000 items took 13 minutes for a quarter of the answers on this loaded
machine, and D_Product's 176 workers would each walk most of its 8,315 items. So by default
D_PosSent with every answer replays a fixed random subsample of --sentiment-all-items items
(with all their answers), D_Product one of --product-items items in both modes, and every
replay stops after --max-seconds (stoppedByTimeBound says so; what was collected is scored).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator"), str(REPO / "bench")]

import psycopg  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from psycopg import sql  # noqa: E402

from devstack.datasets import datasets_dir  # noqa: E402
from devstack.kafka import client_connection  # noqa: E402
from devstack.procs import free_port  # noqa: E402
from httpload import HttpConnection, one_request  # noqa: E402
from labelops.api.worker_configmap import (  # noqa: E402
    ENV_CAMPAIGN,
    ENV_KAFKA_BOOTSTRAP,
    ENV_POSTGRES_DSN,
    ENV_TOKEN_PREFIX,
    WorkerConfig,
)
from labelops.quality.consolidation import Method, consolidate  # noqa: E402
from labelops.store.migrations import migrate  # noqa: E402
from labelops.worker.config import ENV_HOST, ENV_PORT, ENV_RESPONSE_VALIDATION  # noqa: E402
from run import machine  # noqa: E402

DATASETS = datasets_dir()
PUBLISHED = {  # Ustalov et al., JOSS 2024, over every answer and every item
    "zheng_d_sentiment": {"majority": 0.932, "dawid-skene": 0.960},
    "zheng_d_product": {"majority": 0.897, "dawid-skene": 0.940},
}
METHODS: tuple[Method, ...] = ("majority", "weighted", "dawid-skene")
GOLD_SHARE = 0.10
SEED = 2017  # bench_consolidation's: the same gold items
OVERLAP = {"min": 2, "max": 7, "agreement": 0.95}
GRACE_SECONDS = 3.0  # longer than the quality job's interval (quality_loop.INTERVAL_SECONDS)
QUIET_KAFKA = {"log_level": 0}

Answer = tuple[str, str, int]


def log(message: str) -> None:
    print(f"[crowd-replay] {message}", file=sys.stderr, flush=True)


# --- the data ---------------------------------------------------------------------------------


@dataclass
class Dataset:
    name: str
    answers: list[Answer]
    truth: dict[str, int]
    gold: set[str]
    subsample: int | None = None

    @property
    def items(self) -> list[str]:
        return sorted(self.truth)

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in sorted({v for _, _, v in self.answers} | set(self.truth.values()))]

    def per_worker(self) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = defaultdict(dict)
        for item, worker, value in self.answers:
            found[worker][item] = value
        return found

    def answers_per_item(self) -> Counter[str]:
        return Counter(item for item, _, _ in self.answers)


def load(name: str, subsample: int | None) -> Dataset:
    folder = DATASETS / name
    with (folder / "answers.csv").open() as f:
        answers = [(r["item"], r["worker"], int(r["label"])) for r in csv.DictReader(f)]
    with (folder / "truth.csv").open() as f:
        truth = {r["item"]: int(r["label"]) for r in csv.DictReader(f)}
    items = sorted(truth)
    if subsample and subsample < len(items):
        kept = set(random.Random(SEED).sample(items, subsample))
        truth = {i: v for i, v in truth.items() if i in kept}
        answers = [a for a in answers if a[0] in kept]
    else:
        subsample = None
    gold = set(random.Random(SEED).sample(sorted(truth), round(GOLD_SHARE * len(truth))))
    return Dataset(name, answers, truth, gold, subsample)


# --- the campaign -----------------------------------------------------------------------------


def campaign(dataset: Dataset, mode: str, labelers: list[str]) -> WorkerConfig:
    name = f"crowd-{mode.replace('-unblocked', 'u')}-{uuid.uuid4().hex[:6]}"
    prefix = f"labelops.bench.{name}"
    most = max(dataset.answers_per_item().values())
    quality: dict[str, Any] = {
        "gold": {"rate": 0.1, "onboarding": 5, "minAnswers": 10, "minAccuracy": 0.8}
    }
    overlap = {**OVERLAP, "max": min(OVERLAP["max"], most)}
    if mode == "adaptive":
        quality["overlap"] = overlap
    return WorkerConfig.model_validate(
        {
            "namespace": "bench",
            "name": name,
            "task": {
                "type": "classification",
                "instructions": "Pick the answer that fits the item.",
                "choices": dataset.classes,
            },
            "target": {
                "items": len(dataset.truth) - len(dataset.gold),
                "labelsPerItem": overlap["max"] if mode == "adaptive" else most,
            },
            "quotas": {
                "perLabelerDaily": 100_000,
                "maxLeasesPerLabeler": 5,
                "leaseSeconds": 3600,
            },
            "quality": quality,
            # spec.labelers.unblocked: gold answers are still scored, nobody is blocked.
            "unblocked": labelers if mode == "all-unblocked" else [],
            "schema": f"lc_bench_{name.replace('-', '_')}",
            "topics": {"items": f"{prefix}.items", "labels": f"{prefix}.labels"},
            "consumerGroup": f"{prefix}.worker",
        }
    )


def provision(dsn: str, bootstrap: str, config: WorkerConfig) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, config.schema_)
    admin = AdminClient(client_connection(bootstrap).client_config(QUIET_KAFKA))
    topics = [config.topics.items, config.topics.labels]
    for future in admin.create_topics([NewTopic(t, 3, 1) for t in topics]).values():
        future.result(30)


def drop(dsn: str, bootstrap: str, config: WorkerConfig) -> None:
    admin = AdminClient(client_connection(bootstrap).client_config(QUIET_KAFKA))
    for future in admin.delete_topics([config.topics.items, config.topics.labels]).values():
        future.result(30)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(config.schema_)))


def produce_items(bootstrap: str, config: WorkerConfig, dataset: Dataset) -> None:
    producer = Producer(
        client_connection(bootstrap).client_config({"linger.ms": 20, **QUIET_KAFKA})
    )
    for n, item in enumerate(dataset.items):
        message: dict[str, Any] = {"id": item, "payload": {"text": f"{dataset.name} item {item}"}}
        if item in dataset.gold:
            message["gold"] = {"value": {"choice": str(dataset.truth[item])}}
        producer.produce(config.topics.items, key=item.encode(), value=json.dumps(message))
        if n % 5000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("items were not all delivered to Kafka")


def start_worker(
    config: WorkerConfig, dsn: str, bootstrap: str, tokens: dict[str, str], port: int
) -> tuple[subprocess.Popen[bytes], Path]:
    env = {
        **os.environ,
        ENV_CAMPAIGN: config.model_dump_json(by_alias=True),
        ENV_POSTGRES_DSN: dsn,
        ENV_KAFKA_BOOTSTRAP: bootstrap,
        ENV_HOST: "127.0.0.1",
        ENV_PORT: str(port),
        ENV_RESPONSE_VALIDATION: "log",
        **{f"{ENV_TOKEN_PREFIX}{labeler}": token for labeler, token in tokens.items()},
    }
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"{config.name}-worker.log"
    log(f"worker log: {log_path}")
    process = subprocess.Popen(
        [sys.executable, "-m", "labelops.cli", "worker"],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return process, log_path


def wait_ready(port: int, worker: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}; see its log")
        try:
            status, _ = asyncio.run(one_request(port, "GET", "/readyz", None))
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the worker did not become ready")


def wait_ingested(dsn: str, config: WorkerConfig, items: int, timeout: float = 120.0) -> float:
    started = time.monotonic()
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(config.schema_, "items"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() - started < timeout:
            row = conn.execute(query).fetchone()
            if row and row[0] >= items:
                return time.monotonic() - started
            time.sleep(0.3)
    raise RuntimeError(f"only some of the {items} items were ingested after {timeout:.0f}s")


# --- the crowd --------------------------------------------------------------------------------


@dataclass
class Crowd:
    """What the labelers share: a change counter (submissions and releases) that idle
    labelers wait on, and the tallies."""

    changes: int = 0
    idle: set[str] = field(default_factory=set)
    idle_at: dict[str, int] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)
    finished: bool = False
    timed_out: bool = False
    outcomes: Counter[str] = field(default_factory=Counter)
    blocked: set[str] = field(default_factory=set)
    condition: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def changed(self) -> None:
        async with self.condition:
            self.changes += 1
            self.condition.notify_all()

    async def wait_for_change(self, labeler: str) -> None:
        async with self.condition:
            seen = self.changes
            self.idle.add(labeler)
            self.idle_at[labeler] = seen
            await self.condition.wait_for(lambda: self.finished or self.changes != seen)
            self.idle.discard(labeler)

    def all_idle(self) -> bool:
        return bool(self.active) and all(
            lb in self.idle and self.idle_at[lb] == self.changes for lb in self.active
        )


async def replay(
    port: int, tokens: dict[str, str], answers: dict[str, dict[str, int]], max_seconds: float
) -> Crowd:
    crowd = Crowd()
    crowd.active = set(tokens)
    deadline = time.monotonic() + max_seconds

    async def labeler(name: str) -> None:
        mine = dict(answers[name])
        connection = await HttpConnection.open(port, tokens[name])
        task: dict[str, Any] | None = None
        try:
            while mine and not crowd.finished:
                if task is None:
                    status, body = await connection.request("POST", "/v1/tasks/claim")
                    crowd.outcomes[f"claim {status}"] += 1
                    if status == 204:
                        await crowd.wait_for_change(name)
                        continue
                    if status == 403:
                        crowd.blocked.add(name)
                        return
                    if status != 200:
                        log(f"{name}: claim answered {status}: {body[:300]!r}")
                        return
                    task = json.loads(body)
                assert task is not None
                item = task["id"]
                if item in mine:
                    label = json.dumps({"value": {"choice": str(mine.pop(item))}}).encode()
                    status, body = await connection.request(
                        "POST", f"/v1/tasks/{item}/labels?next=true", label
                    )
                    crowd.outcomes[f"submit {status}"] += 1
                    task = json.loads(body).get("next") if status == 201 else None
                    if status == 403:
                        crowd.blocked.add(name)
                        return
                    if status not in (201, 409):  # 409: completed while leased
                        log(f"{name}: submit of {item} answered {status}: {body[:300]!r}")
                else:
                    status, body = await connection.request("POST", f"/v1/tasks/{item}/release")
                    crowd.outcomes[f"release {status}"] += 1
                    task = None
                await crowd.changed()
            if task is not None:  # the next task a last receipt brought: given back
                await connection.request("POST", f"/v1/tasks/{task['id']}/release")
                await crowd.changed()
        finally:
            connection.close()
            crowd.active.discard(name)
            async with crowd.condition:
                crowd.condition.notify_all()

    async def watch() -> None:
        """Ends the run when every labeler is idle and a retry after the grace period
        brought no submission or release."""
        while crowd.active:
            await asyncio.sleep(0.1)
            if time.monotonic() > deadline:
                log(f"time bound of {max_seconds:.0f}s reached: the labelers stop")
                crowd.timed_out = True
                async with crowd.condition:
                    crowd.finished = True
                    crowd.condition.notify_all()
                return
            if not crowd.all_idle():
                continue
            before = crowd.changes
            await asyncio.sleep(GRACE_SECONDS)
            if crowd.changes != before:
                continue
            await crowd.changed()  # every idle labeler claims once more
            poked = crowd.changes
            while crowd.active and not crowd.all_idle():
                await asyncio.sleep(0.1)
            if crowd.changes == poked:
                async with crowd.condition:
                    crowd.finished = True
                    crowd.condition.notify_all()
                return

    await asyncio.gather(watch(), *(labeler(name) for name in tokens))
    return crowd


# --- the results ------------------------------------------------------------------------------


def exported(dsn: str, schema: str, method: str) -> dict[str, str] | None:
    """itemId -> consolidated choice, from `labelops export --format consolidated`'s code."""
    try:
        from labelops.report.export import write_export
    except ImportError:
        return None
    out = io.BytesIO()
    with psycopg.connect(dsn) as conn:
        try:
            write_export(conn, schema, "consolidated", out, method)
        except (TypeError, ValueError) as err:  # the format not in this version
            log(f"export --format consolidated --method {method}: {err}")
            return None
    found = {}
    for line in out.getvalue().splitlines():
        record = json.loads(line)
        found[record["itemId"]] = record["value"]["choice"]
    return found


def read_campaign(dsn: str, schema: str) -> dict[str, Any]:
    def table(name: str) -> sql.Identifier:
        return sql.Identifier(schema, name)

    with psycopg.connect(dsn) as conn:
        labels = conn.execute(
            sql.SQL(
                "SELECT i.external_id, l.labeler, l.value->>'choice', l.status, l.gold,"
                " i.gold_value IS NOT NULL, i.completed_at IS NOT NULL"
                " FROM {} l JOIN {} i ON i.id = l.item_id ORDER BY l.item_id, l.ordinal"
            ).format(table("labels"), table("items"))
        ).fetchall()
        items = conn.execute(
            sql.SQL(
                "SELECT external_id, gold_value IS NOT NULL, completed_at IS NOT NULL,"
                " consolidated_value->>'choice', disputed FROM {}"
            ).format(table("items"))
        ).fetchall()
        quality = conn.execute(
            sql.SQL(
                "SELECT labeler, claims, gold_answers, gold_correct, agreements,"
                " agreement_total, blocked_at IS NOT NULL, blocked_reason FROM {}"
            ).format(table("labeler_quality"))
        ).fetchall()
        skips = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table("skips"))).fetchone()
    return {"labels": labels, "items": items, "quality": quality, "skips": skips[0] if skips else 0}


def score(found: dict[str, str], truth: dict[str, int], items: set[str]) -> dict[str, Any]:
    scored = [i for i in items if i in found]
    correct = sum(str(truth[i]) == str(found[i]) for i in scored)
    return {
        "items": len(scored),
        "accuracy": round(correct / len(scored), 4) if scored else None,
        # items without a consolidated label counted as wrong
        "accuracyOverAllNonGoldItems": round(correct / len(items), 4) if items else None,
    }


def evaluate(dsn: str, config: WorkerConfig, dataset: Dataset) -> dict[str, Any]:
    from labelops.quality.posterior import labeler_accuracy

    state = read_campaign(dsn, config.schema_)
    data_items = set(dataset.truth) - dataset.gold
    counted = [
        (item, labeler, value)
        for item, labeler, value, status, gold_label, gold_item, _ in state["labels"]
        if status == "counted" and not gold_label and not gold_item
    ]
    # Every answer labelers gave through the API, a blocked labeler's excluded ones too.
    given = [
        (item, labeler, value)
        for item, labeler, value, _, gold_label, gold_item, _ in state["labels"]
        if not gold_label and not gold_item
    ]
    excluded = sum(1 for row in state["labels"] if row[3] == "excluded")
    gold_answers = sum(1 for row in state["labels"] if row[4] or row[5])
    completed = {i for i, gold_item, done, _, _ in state["items"] if done and not gold_item}
    # What the worker itself decided at completion (adaptive overlap: the one-coin
    # posterior's leading answer, item_consensus.sql).
    at_completion = {
        i: value
        for i, gold_item, done, value, _ in state["items"]
        if done and not gold_item and value is not None
    }
    disputed = sum(1 for i, gold_item, done, _, d in state["items"] if done and not gold_item and d)
    k = len(dataset.classes)
    accuracy = {
        lb: labeler_accuracy(correct, answers, agree, total, num_classes=k)
        for lb, _, answers, correct, agree, total, _, _ in state["quality"]
    }
    blocked = {lb: reason for lb, *_, is_blocked, reason in state["quality"] if is_blocked}
    methods: dict[str, Any] = {}
    for method in METHODS:
        entry: dict[str, Any] = {}
        export = exported(dsn, config.schema_, method)
        if export is not None:
            entry["export"] = score(export, dataset.truth, data_items)
        kwargs: dict[str, Any] = (
            {"labeler_accuracy": accuracy, "num_classes": k} if method == "weighted" else {}
        )
        result = consolidate(counted, method, **kwargs)
        entry["everyNonGoldItem"] = score(
            {i: str(r.value) for i, r in result.items()}, dataset.truth, data_items
        )
        if method != "weighted" and len(given) > len(counted):
            result = consolidate(given, method)
            entry["everyLabelGivenWithExcluded"] = score(
                {i: str(r.value) for i, r in result.items()}, dataset.truth, data_items
            )
        published = PUBLISHED[dataset.name].get(method)
        if published is not None:
            entry["published"] = published
            ours = (entry.get("export") or entry["everyNonGoldItem"])["accuracy"]
            entry["differenceFromPublished"] = round(ours - published, 4)
        methods[method] = entry
    available = dataset.answers_per_item()
    if at_completion:
        methods["worker-at-completion"] = {
            "store": score(at_completion, dataset.truth, data_items),
            "disputed": disputed,
        }
    return {
        "methods": methods,
        "nonGoldItems": len(data_items),
        "itemsCompleted": len(completed),
        "itemsNotReachingRule": len(data_items - completed),
        "itemsWithoutAnyLabel": len(data_items - {i for i, _, _ in counted}),
        "countedHumanLabels": len(counted),
        "humanLabelsGiven": len(given),
        "humanLabelsPerItem": round(len(counted) / len(data_items), 3),
        "answersAvailablePerItem": round(
            sum(available[i] for i in data_items) / len(data_items), 3
        ),
        "goldAnswers": gold_answers,
        "labelsPerItemWithGold": round((len(counted) + gold_answers) / len(data_items), 3),
        "excludedLabels": excluded,
        "skips": state["skips"],
        "labelersBlocked": len(blocked),
        "blocked": dict(sorted(blocked.items())),
    }


def run_mode(
    dsn: str, bootstrap: str, dataset: Dataset, mode: str, max_seconds: float
) -> dict[str, Any]:
    answers = dataset.per_worker()
    config = campaign(dataset, mode, sorted(answers))
    tokens = {worker: f"crowd-{uuid.uuid4().hex}" for worker in sorted(answers)}
    log(f"{dataset.name} / {mode}: {len(dataset.truth)} items, {len(tokens)} labelers")
    provision(dsn, bootstrap, config)
    port = free_port()
    worker, log_path = start_worker(config, dsn, bootstrap, tokens, port)
    out: dict[str, Any] = {
        "campaign": {
            "labelsPerItem": config.target.labels_per_item,
            "quality": config.quality.model_dump(by_alias=True, exclude_none=True)
            if config.quality
            else None,
        },
        "loadAverageAtStart": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        wait_ready(port, worker)
        produce_items(bootstrap, config, dataset)
        out["ingestSeconds"] = round(wait_ingested(dsn, config, len(dataset.truth)), 2)
        started = time.monotonic()
        crowd = asyncio.run(replay(port, tokens, answers, max_seconds))
        out["wallSeconds"] = round(time.monotonic() - started, 1)
        out["stoppedByTimeBound"] = crowd.timed_out
        out["labelersWithAnswersLeft"] = len(crowd.active) if crowd.timed_out else None
        out["responses"] = dict(sorted(crowd.outcomes.items()))
        out["labelersRefusedByBlock"] = len(crowd.blocked)
        time.sleep(GRACE_SECONDS)  # the quality job's last exclusions (every 2 s)
    finally:
        worker.send_signal(signal.SIGTERM)
        out["workerExitCode"] = worker.wait(60)
    out["loadAverageAtEnd"] = [round(x, 2) for x in os.getloadavg()]
    try:
        out.update(evaluate(dsn, config, dataset))
    finally:
        drop(dsn, bootstrap, config)
    log(json.dumps({k: out[k] for k in ("wallSeconds", "humanLabelsPerItem", "labelersBlocked")}))
    log(f"worker log kept at {log_path}")
    return out


def stack_settings() -> tuple[str, str]:
    if ENV_POSTGRES_DSN in os.environ and ENV_KAFKA_BOOTSTRAP in os.environ:
        return os.environ[ENV_POSTGRES_DSN], os.environ[ENV_KAFKA_BOOTSTRAP]
    from devstack import stack

    env = stack.ensure_up(components=("postgres", "kafka")).env
    return env[ENV_POSTGRES_DSN], env[ENV_KAFKA_BOOTSTRAP]


def durable_commit(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN"
            " ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method')"
        ).fetchall()
    return dict(rows)


def targets(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, modes in results.items():
        for mode in ("all", "all-unblocked"):
            every = modes.get(mode)
            if every:
                ds = every["methods"]["dawid-skene"]
                out[f"{name}/{mode}: Dawid-Skene within 0.005 of {ds['published']}"] = (
                    abs(ds["differenceFromPublished"]) <= 0.005
                )
    adaptive = results.get("zheng_d_sentiment", {}).get("adaptive")
    if adaptive:
        best = max(
            (m.get("export") or m.get("everyNonGoldItem") or m["store"])["accuracy"] or 0
            for m in adaptive["methods"].values()
        )
        out["zheng_d_sentiment/adaptive: accuracy >= 0.95 with <= 7 labels per item"] = (
            best >= 0.95 and adaptive["humanLabelsPerItem"] <= 7
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--datasets", nargs="+", default=["zheng_d_sentiment", "zheng_d_product"], metavar="D"
    )
    p.add_argument(
        "--modes",
        nargs="+",
        choices=["all", "all-unblocked", "adaptive"],
        default=["all", "all-unblocked", "adaptive"],
    )
    p.add_argument(
        "--product-items",
        type=int,
        default=250,
        help="D_Product items replayed (a fixed random subsample; 0: all 8,315)",
    )
    p.add_argument(
        "--sentiment-items",
        type=int,
        default=0,
        help="D_PosSent items replayed with adaptive overlap (a fixed random subsample; 0: all)",
    )
    p.add_argument(
        "--sentiment-all-items",
        type=int,
        default=400,
        help="D_PosSent items replayed with every answer (labelsPerItem 20; 0: all 1,000)",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=900.0,
        help="bound on one replay: the labelers stop then and what was collected is scored",
    )
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "crowd_replay.json"))
    args = p.parse_args()
    dsn, bootstrap = stack_settings()
    document: dict[str, Any] = {
        "machine": machine(),
        "durableCommit": durable_commit(dsn),
        "data": "Zheng et al., PVLDB 10(5) 2017; published: Ustalov et al., JOSS 9(96) 2024",
        "goldShare": GOLD_SHARE,
        "seed": SEED,
        "datasets": {},
    }
    for name in args.datasets:
        modes: dict[str, Any] = {}
        for mode in args.modes:
            if name == "zheng_d_product":
                subsample = args.product_items
            else:
                every = mode.startswith("all")
                subsample = args.sentiment_all_items if every else args.sentiment_items
            dataset = load(name, subsample or None)
            modes[mode] = {
                "items": len(dataset.truth),
                "answers": len(dataset.answers),
                "workers": len(dataset.per_worker()),
                "goldItems": len(dataset.gold),
                "subsample": dataset.subsample,
                **run_mode(dsn, bootstrap, dataset, mode, args.max_seconds),
            }
        document["datasets"][name] = modes
    document["targets"] = targets(
        {
            n: {m: v for m, v in d.items() if isinstance(v, dict)}
            for n, d in document["datasets"].items()
        }
    )
    document["machine"]["loadAverageAtEnd"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(document, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
