"""The chaos suite: faults injected one at a time, then in combination, while labelers label
through a real worker process at full speed and items stream in on Kafka.

For each fault:
1. the labelers run until labels flow (warm-up);
2. the fault is injected and held for `hold` seconds under load;
3. it is healed (a server restarted, the proxy forwarding again); the worker must recover by
   itself: the clock runs until /readyz answers 200 and a label is acknowledged again (a
   worker that exits is restarted, as the kubelet would, and that counts against every
   fault except those that kill the worker);
4. the labelers stop (each first gets a definitive answer for the submission it is
   retrying), the item stream pauses, and the suite waits until every produced item is in
   PostgreSQL, the outbox is empty and the labels topic holds every acknowledged label;
5. the ledger is reconciled (tests/chaos/ledger.py) and some acknowledged submissions are
   sent again with their Idempotency-Key: each must be answered with its original label.

Expectations besides the ledger: no answer is a 5xx other than 503, and every 503 carries
Retry-After and a problem detail; while the database is out, /readyz fails; while only
Kafka is out, /readyz stays 200 and labels are still acknowledged.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql

from chaos.ledger import Ledger, Observed, StoredLabel, Verdict, reconcile
from chaos.stack import ChaosStack
from chaos.traffic import QUIET, ItemStream, Labelers, ReadinessPoller, TopicWatcher, replay
from devstack.procs import free_port
from labelops.api.worker_configmap import (
    ENV_CAMPAIGN,
    ENV_POSTGRES_DSN,
    ENV_TOKEN_PREFIX,
    WorkerConfig,
)
from labelops.store.migrations import migrate
from labelops.worker.config import ENV_HOST, ENV_PORT

LABELS_PER_ITEM = 2
RECOVERY_TIMEOUT = 120.0
CATCH_UP_TIMEOUT = 240.0
REPLAYS_PER_FAULT = 20


@dataclass(frozen=True)
class SuiteConfig:
    labelers: int = 32
    hold_seconds: float = 6.0
    warmup_labels: int = 200
    items_ahead: int = 3000
    state_dir: Path = Path("/tmp/chaos-stack")
    log_dir: Path = Path("/tmp/chaos-stack/logs")


# --- the worker, restarted like a pod ----------------------------------------------------


class WorkerPod:
    """`labelops worker` in its own process group; restarted when it exits, as the kubelet
    restarts a container (restarts are counted: only a fault that kills it may cause one)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, **env, ENV_PORT: str(self.port), ENV_HOST: "127.0.0.1"}
        self._log_dir = log_dir
        self.exits: list[tuple[float, int]] = []
        self.kills = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._process = self._spawn()
        self._watch = threading.Thread(target=self._restart_on_exit, daemon=True)
        self._watch.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        log = (self._log_dir / f"worker-{len(self.exits) + self.kills}.log").open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "labelops.cli", "worker"],
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _restart_on_exit(self) -> None:
        while not self._closed.wait(0.1):
            with self._lock:
                code = self._process.poll()
                if code is None:
                    continue
                if code != -signal.SIGKILL:
                    self.exits.append((time.monotonic(), code))
                self._process = self._spawn()

    def kill(self) -> None:
        """SIGKILL to every process of the worker (its supervisor and HTTP processes)."""
        with self._lock:
            self.kills += 1
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(10)
            self._process = self._spawn()

    def wait_ready(self, timeout: float) -> None:
        wait_for(lambda: self.ready(), timeout, "the worker's /readyz never answered 200")

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def close(self) -> None:
        self._closed.set()
        self._watch.join(5)
        with self._lock:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(40)
                except subprocess.TimeoutExpired:
                    os.killpg(self._process.pid, signal.SIGKILL)
                    self._process.wait(10)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until condition() held; AssertionError naming `what` after timeout."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s: {what}")
        time.sleep(0.1)
    return time.monotonic() - started


# --- the campaign -------------------------------------------------------------------------


def campaign_config(name: str) -> WorkerConfig:
    prefix = f"labelops.chaos.{name}"
    return WorkerConfig.model_validate(
        {
            "namespace": "chaos",
            "name": name,
            "task": {"type": "pairwise", "instructions": "Pick the kinder answer."},
            "target": {"items": 10_000_000, "labelsPerItem": LABELS_PER_ITEM},
            "quotas": {"perLabelerDaily": 100_000, "maxLeasesPerLabeler": 50,
                       "leaseSeconds": 300},
            "schema": f"lc_chaos_{name.replace('-', '_')}",
            "topics": {"items": f"{prefix}.items", "labels": f"{prefix}.labels"},
            "consumerGroup": f"{prefix}.worker",
        }
    )  # fmt: skip


def provision(chaos: ChaosStack, config: WorkerConfig) -> None:
    with psycopg.connect(chaos.admin_dsn, autocommit=True) as conn:
        migrate(conn, config.schema_)
    admin = AdminClient(chaos.kafka_config(QUIET))
    topics = [config.topics.items, config.topics.labels]
    for future in admin.create_topics(
        [NewTopic(t, num_partitions=3, replication_factor=1) for t in topics]
    ).values():
        future.result(30)


def observe(chaos: ChaosStack, config: WorkerConfig, worker: WorkerPod, token: str,
            watcher: TopicWatcher) -> Observed:  # fmt: skip
    schema = sql.Identifier(config.schema_)
    with psycopg.connect(chaos.admin_dsn, autocommit=True) as conn:
        labels = conn.execute(
            sql.SQL(
                "SELECT l.id::text, i.external_id, l.labeler, l.idempotency_key"
                " FROM {}.labels l JOIN {}.items i ON i.id = l.item_id"
            ).format(schema, schema)
        ).fetchall()
        items = conn.execute(
            sql.SQL("SELECT external_id, count(*) FROM {}.items GROUP BY 1").format(schema)
        ).fetchall()
        row = conn.execute(
            sql.SQL(
                "SELECT (SELECT count(*) FROM {s}.items),"
                " (SELECT count(*) FROM {s}.items WHERE completed_at IS NOT NULL),"
                " (SELECT count(*) FROM {s}.labels),"
                " (SELECT count(*) FROM {s}.dead_letters)"
            ).format(s=schema)
        ).fetchone()
    assert row is not None
    progress = requests.get(
        f"{worker.url}/v1/progress", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()
    names = ("itemsTotal", "itemsCompleted", "labels", "deadLettered")
    return Observed(
        stored_labels=tuple(StoredLabel(*r) for r in labels),
        topic_label_ids=watcher.seen(),
        stored_item_ids=Counter({external: n for external, n in items}),
        counters={name: progress[name] for name in names},
        full_counts=dict(zip(names, row, strict=True)),
    )


def outbox_rows(chaos: ChaosStack, config: WorkerConfig) -> int:
    with psycopg.connect(chaos.admin_dsn, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.outbox").format(sql.Identifier(config.schema_))
        ).fetchone()
    return int(row[0]) if row else -1


def stored_items(chaos: ChaosStack, config: WorkerConfig) -> int:
    with psycopg.connect(chaos.admin_dsn, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.items").format(sql.Identifier(config.schema_))
        ).fetchone()
    return int(row[0]) if row else -1


# --- faults ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    inject: Callable[[Run], None]
    heal: Callable[[Run], None]
    database_out: bool = False  # /readyz must fail while it lasts
    kafka_only: bool = False  # labels acknowledged and /readyz 200 while it lasts
    kills_worker: bool = False


def _pg_proxy(run: Run) -> Any:
    return run.chaos.pg_proxy


def _kafka_proxy(run: Run) -> Any:
    return run.chaos.kafka_proxy


def _kill_worker_mid_submit(run: Run) -> None:
    assert run.labelers is not None
    labelers = run.labelers
    wait_for(lambda: labelers.in_flight_submissions > 0, 30, "a submission in flight")
    run.worker.kill()


def _nothing(run: Run) -> None:
    return None


def _all(*steps: Callable[[Run], None]) -> Callable[[Run], None]:
    def both(run: Run) -> None:
        for step in steps:
            step(run)

    return both


SINGLE_FAULTS: tuple[Fault, ...] = (
    Fault("postgres-sigkill", "PostgreSQL SIGKILLed, restarted after the hold",
          lambda r: r.chaos.kill_postgres(), lambda r: r.chaos.start_postgres(),
          database_out=True),
    Fault("postgres-read-only", "PostgreSQL read-only (SQLSTATE 25006, as a failover answers)",
          lambda r: r.chaos.set_read_only(True), lambda r: r.chaos.set_read_only(False),
          database_out=True),
    Fault("postgres-connections-cut", "every worker connection to PostgreSQL reset at once",
          lambda r: _pg_proxy(r).cut(), _nothing),
    Fault("postgres-blackhole", "worker <-> PostgreSQL accepted but never forwarded",
          lambda r: _pg_proxy(r).blackhole(), lambda r: _pg_proxy(r).forward(),
          database_out=True),
    Fault("kafka-sigkill", "the Kafka broker SIGKILLed, restarted after the hold",
          lambda r: r.chaos.kill_kafka(), lambda r: r.chaos.start_kafka(), kafka_only=True),
    Fault("kafka-connections-cut", "every worker connection to Kafka reset at once",
          lambda r: _kafka_proxy(r).cut(), _nothing, kafka_only=True),
    Fault("kafka-blackhole", "worker <-> Kafka accepted but never forwarded",
          lambda r: _kafka_proxy(r).blackhole(), lambda r: _kafka_proxy(r).forward(),
          kafka_only=True),
    Fault("worker-sigkill-mid-submit", "the worker's processes SIGKILLed with submissions in "
          "flight; restarted as a pod", _kill_worker_mid_submit, _nothing, kills_worker=True),
)  # fmt: skip

COMBINED_FAULTS: tuple[Fault, ...] = (
    Fault("postgres+kafka-sigkill", "PostgreSQL and Kafka SIGKILLed together",
          _all(lambda r: r.chaos.kill_kafka(), lambda r: r.chaos.kill_postgres()),
          _all(lambda r: r.chaos.start_postgres(), lambda r: r.chaos.start_kafka()),
          database_out=True),
    Fault("worker-sigkill-while-postgres-down", "PostgreSQL SIGKILLed, then the worker, "
          "with submissions in flight; both come back",
          _all(lambda r: r.chaos.kill_postgres(), _kill_worker_mid_submit),
          lambda r: r.chaos.start_postgres(), database_out=True, kills_worker=True),
    Fault("postgres-read-only+kafka-blackhole", "PostgreSQL read-only while Kafka is "
          "blackholed", _all(lambda r: _kafka_proxy(r).blackhole(),
                             lambda r: r.chaos.set_read_only(True)),
          _all(lambda r: r.chaos.set_read_only(False), lambda r: _kafka_proxy(r).forward()),
          database_out=True),
)  # fmt: skip

ALL_FAULTS = SINGLE_FAULTS + COMBINED_FAULTS


# --- one run --------------------------------------------------------------------------------


@dataclass
class FaultResult:
    name: str
    what: str
    requests: int
    answers: dict[str, int]
    readiness: dict[str, int]
    heal_seconds: float
    recovery_seconds: float | None
    catch_up_seconds: float | None
    acknowledged_during: int
    verdict: Verdict
    replays: dict[str, int]
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def labels_lost(self) -> int:
        return len(set(self.verdict.labels_lost) | set(self.verdict.labels_not_relayed))

    def as_dict(self) -> dict[str, Any]:
        return {
            "fault": self.name,
            "what": self.what,
            "requestsDuringFault": self.requests,
            "answersByStatus": self.answers,
            "readinessDuringFault": self.readiness,
            "healSeconds": self.heal_seconds,
            "recoverySeconds": self.recovery_seconds,
            "catchUpSeconds": self.catch_up_seconds,
            "labelsAcknowledgedDuringFault": self.acknowledged_during,
            "labelsAcknowledgedSoFar": self.verdict.acknowledged,
            "labelsLost": self.labels_lost,
            "itemsLost": len(self.verdict.items_lost),
            "itemsDoubled": len(self.verdict.items_doubled),
            "committedButUnanswered": self.verdict.unacknowledged_stored,
            "topicDuplicates": self.verdict.topic_duplicates,
            "replays": self.replays,
            "passed": self.passed,
            "failures": self.failures,
        }


@dataclass
class Run:
    config: SuiteConfig
    chaos: ChaosStack
    campaign: WorkerConfig
    worker: WorkerPod
    tokens: dict[str, str]
    ledger: Ledger
    items: ItemStream
    watcher: TopicWatcher
    readiness: ReadinessPoller
    labelers: Labelers | None = None
    log: Callable[[str], None] = print

    def run_fault(self, fault: Fault) -> FaultResult:
        self.log(f"fault {fault.name}: {fault.what}")
        labelers = self.labelers = Labelers(self.worker.port, self.tokens, self.ledger)
        self.items.resume()
        labelers.start()
        start_acks = self.ledger.acknowledged_count
        wait_for(
            lambda: self.ledger.acknowledged_count >= start_acks + self.config.warmup_labels,
            RECOVERY_TIMEOUT,
            f"{self.config.warmup_labels} labels before {fault.name}",
        )
        exits_before = len(self.worker.exits)
        injected = time.monotonic()
        fault.inject(self)
        held = time.monotonic()
        self._hold(fault, labelers, held)
        heal_started = time.monotonic()
        fault.heal(self)
        healed = time.monotonic()
        failures: list[str] = []
        recovery: float | None = None
        try:
            recovery = wait_for(
                lambda: self._recovered(labelers, healed), RECOVERY_TIMEOUT,
                f"{fault.name}: /readyz 200 and a label acknowledged after the fault healed",
            )  # fmt: skip
        except AssertionError as err:
            failures.append(str(err))
        recovered = time.monotonic()
        after = self.ledger.acknowledged_count + self.config.warmup_labels // 2
        wait_for(lambda: self.ledger.acknowledged_count >= after, RECOVERY_TIMEOUT,
                 "labels after the recovery")  # fmt: skip
        labelers.stop()
        self.items.pause()
        catch_up: float | None = None
        try:
            catch_up = self._catch_up()
        except AssertionError as err:
            failures.append(str(err))
        items, acks = self.ledger.snapshot()
        verdict = reconcile(
            items,
            acks,
            observe(self.chaos, self.campaign, self.worker, self._any_token(), self.watcher),
            self.ledger.replay_mismatches,
        )
        failures += list(verdict.problems)
        replays = self._replay(labelers)
        failures += self._expectations(fault, labelers, injected, healed, exits_before, replays)
        during = [o for o in labelers.outcomes if injected <= o.at <= recovered]
        answers = Counter(f"{o.kind} {o.status or 'no answer'}" for o in during)
        ready = Counter(
            "200" if s == 200 else (str(s) if s else "no answer")
            for t, s in self.readiness.samples
            if injected <= t <= healed
        )
        result = FaultResult(
            name=fault.name,
            what=fault.what,
            requests=len(during),
            answers=dict(sorted(answers.items())),
            readiness=dict(sorted(ready.items())),
            heal_seconds=round(healed - heal_started, 2),
            recovery_seconds=None if recovery is None else round(recovery, 2),
            catch_up_seconds=None if catch_up is None else round(catch_up, 2),
            acknowledged_during=_acknowledged(labelers, injected, healed),
            verdict=verdict,
            replays=replays,
            failures=failures,
        )  # fmt: skip
        self.log(
            f"  {'passed' if result.passed else 'FAILED'}: {result.requests} requests, "
            f"{result.answers}, recovered in {result.recovery_seconds}s, caught up in "
            f"{result.catch_up_seconds}s, labels lost {result.labels_lost}"
            + "".join(f"\n    - {f}" for f in failures)
        )
        return result

    def _hold(self, fault: Fault, labelers: Labelers, held: float) -> None:
        """The fault lasts hold_seconds under load, and until its effect was seen: /readyz
        failing for a database outage, a label acknowledged for a Kafka-only one (the
        expectations name what never showed)."""

        def seen() -> bool:
            if time.monotonic() - held < self.config.hold_seconds:
                return False
            if fault.database_out:
                return any(s != 200 for t, s in self.readiness.samples[-50:] if t > held)
            if fault.kafka_only:
                return any(o.at > held and o.kind == "submit" and o.status in (200, 201)
                           for o in labelers.outcomes[-500:])  # fmt: skip
            return True

        # Not seen in time: the expectations report what never showed.
        with contextlib.suppress(AssertionError):
            wait_for(seen, self.config.hold_seconds + 60, f"the effect of {fault.name}")

    def _any_token(self) -> str:
        return next(iter(self.tokens.values()))

    def _recovered(self, labelers: Labelers, healed: float) -> bool:
        acknowledged = any(
            o.at > healed and o.kind == "submit" and o.status in (200, 201)
            for o in labelers.outcomes[-500:]
        )
        return acknowledged and self.worker.ready()

    def _catch_up(self) -> float:
        acks = {a.label_id for a in self.ledger.snapshot()[1]}

        def caught_up() -> bool:
            items, _ = self.ledger.snapshot()
            if stored_items(self.chaos, self.campaign) < len(items):
                return False
            if outbox_rows(self.chaos, self.campaign) != 0:
                return False
            seen = self.watcher.seen()
            return all(seen[label_id] for label_id in acks)

        return wait_for(
            caught_up, CATCH_UP_TIMEOUT,
            "every produced item in PostgreSQL, the outbox empty and every acknowledged label "
            "on the labels topic",
        )  # fmt: skip

    def _replay(self, labelers: Labelers) -> dict[str, int]:
        picks = random.sample(labelers.submitted, min(REPLAYS_PER_FAULT, len(labelers.submitted)))
        outcome: Counter[str] = Counter()
        for submitted in picks:
            status, label_id = replay(self.worker.url, self.tokens[submitted.labeler], submitted)
            same = status == 200 and label_id == submitted.label_id
            outcome["original label" if same else f"{status} {label_id}"] += 1
        return dict(outcome)

    def _expectations(
        self,
        fault: Fault,
        labelers: Labelers,
        injected: float,
        healed: float,
        exits_before: int,
        replays: dict[str, int],
    ) -> list[str]:
        failures = []
        errors = Counter(
            f"{o.kind} {o.status}" for o in labelers.outcomes if o.status >= 500 and o.status != 503
        )
        if errors:
            failures.append(f"5xx answers other than 503: {dict(errors)}")
        malformed = sum(1 for o in labelers.outcomes if not o.well_formed)
        if malformed:
            failures.append(f"{malformed} answers of 503 without Retry-After or a problem detail")
        during = [s for t, s in self.readiness.samples if injected <= t <= healed]
        if fault.database_out and all(s == 200 for s in during):
            failures.append("/readyz kept answering 200 while the database was out")
        if fault.kafka_only:
            if any(s != 200 for s in during):
                failures.append(f"/readyz failed while only Kafka was out: {Counter(during)}")
            if not _acknowledged(labelers, injected, healed):
                failures.append("no label was acknowledged while only Kafka was out")
        exits = self.worker.exits[exits_before:]
        if exits:
            failures.append(f"the worker exited by itself {len(exits)} time(s): {exits}")
        if set(replays) - {"original label"}:
            failures.append(f"retries with the same Idempotency-Key: {replays}")
        if labelers.abandoned:
            failures.append(f"{labelers.abandoned} submissions never got a definitive answer")
        return failures


def _acknowledged(labelers: Labelers, since: float, until: float) -> int:
    return sum(
        1
        for o in labelers.outcomes
        if since <= o.at <= until and o.kind == "submit" and o.status in (200, 201)
    )


def run_suite(
    config: SuiteConfig, faults: Sequence[Fault] = ALL_FAULTS, log: Callable[[str], None] = print
) -> list[FaultResult]:
    config.log_dir.mkdir(parents=True, exist_ok=True)
    chaos = ChaosStack(config.state_dir)
    log(f"starting the private stack in {config.state_dir} (PostgreSQL durable, Kafka)")
    chaos.up()
    closers: list[Callable[[], None]] = [chaos.down]
    try:
        campaign = campaign_config(f"c{uuid.uuid4().hex[:6]}")
        provision(chaos, campaign)
        tokens = {f"l{n:02d}": secrets.token_hex(12) for n in range(config.labelers)}
        env = {
            ENV_CAMPAIGN: campaign.model_dump_json(by_alias=True),
            ENV_POSTGRES_DSN: chaos.worker_dsn,
            **chaos.worker_kafka_env,
            **{f"{ENV_TOKEN_PREFIX}{name}": token for name, token in tokens.items()},
        }
        worker = WorkerPod(env, config.log_dir)
        closers.append(worker.close)
        worker.wait_ready(120)
        ledger = Ledger()
        items = ItemStream(chaos.kafka_config(), campaign.topics.items, ledger, campaign.name,
                           LABELS_PER_ITEM, config.items_ahead)  # fmt: skip
        closers.append(items.close)
        watcher = TopicWatcher(chaos.kafka_config(), campaign.topics.labels)
        closers.append(watcher.close)
        readiness = ReadinessPoller(lambda: worker.url)
        closers.append(readiness.close)
        run = Run(config, chaos, campaign, worker, tokens, ledger, items, watcher, readiness,
                  log=log)  # fmt: skip
        return [run.run_fault(fault) for fault in faults]
    finally:
        for close in reversed(closers):
            try:
                close()
            except Exception as err:  # keep closing the rest
                log(f"warning: closing failed: {err}")
