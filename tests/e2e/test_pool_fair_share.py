"""A LabelerPool's shares end to end: 20 simulated labelers (tests/labelers_sim.py) claim and
label through the real `labelops router` in front of four real `labelops worker` processes
(real PostgreSQL, items produced to each campaign's real Kafka topic), and the shares are
counted from the labels stored in each campaign's schema, not from the router's counters:

- campaigns a, b, c of weights 1:2:1 (priority 0): while all have work, each one's share
  of the labels is within +-5 points of 25/50/25 %;
- a runs out (few items): b and c absorb its share, 2:1 (66.7/33.3 %, +-5 points);
- d (priority 1) gets items while b and c are labeling: from the time all its items are in
  (or its first label, if later) until its last label, no priority-0 campaign gets a label
  (1 s of slack each side);
- c requires the skill `medical`, which 15 of the 20 labelers have: none of the other 5
  ever labels in c (and they do label elsewhere).

Driven without the operator: its LabelerPool handler (the router Deployment, ConfigMap and
Secret, and the service digest in each member's schema) had not landed when this was
written, so the test writes what the operator would: the RouterConfig (api/pool_router.py)
with the workers' loopback URLs, the router's service token per campaign, its digest in
each campaign's schema (store.labeler_tokens.replace_service_digests) and the pool's
labelers' digests. Uses PostgreSQL and Kafka only, hence marked integration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from worker_harness import (
    Campaign,
    WorkerProcess,
    campaign_config,
    pairwise_payload,
    provisioned,
    wait_for,
)

from devstack.procs import free_port
from labelers_sim import (
    Crowd,
    counts_between,
    shares_of,
    stored_labels,
)
from labelops.api.pool_router import (
    ENV_LABELER_DIGESTS,
    ENV_ROUTE_TOKEN_PREFIX,
    ENV_ROUTER_CONFIG,
    ROUTER_SERVICE,
)
from labelops.store.labeler_tokens import replace_service_digests, token_digest

pytestmark = pytest.mark.integration

LABELERS = [f"lab{n:02d}" for n in range(20)]
SKILLED = LABELERS[:15]  # have `medical`
UNSKILLED = LABELERS[15:]
# d (priority 1) must outlast twice SLACK_SECONDS even on an idle machine, where 20 labelers
# label up to about 500 items a second: 400 items were gone in 0.8 s.
ITEMS = {"a": 150, "b": 2000, "c": 2000, "d": 3000}
# Labels b and c absorb after a ran out, before d comes: the window counted for their 2:1
# starts SLACK_SECONDS after a's last label, and at 500 labels a second the slack alone takes
# 500 of them (with 400 absorbed, once 72 were left to count: 7 labels off was 10 points).
ABSORBED = 1200
WEIGHTS = {"a": 1, "b": 2, "c": 1}
TOLERANCE = 0.05
SLACK_SECONDS = 1.0


@contextmanager
def campaign_and_worker(
    key: str, dsn: str, bootstrap: str, tmp: Path, service_token: str
) -> Iterator[tuple[Campaign, WorkerProcess]]:
    config = campaign_config(
        f"pool{key}-{uuid.uuid4().hex[:6]}",
        {"type": "pairwise"},
        items=ITEMS[key],
        quotas={"perLabelerDaily": 10_000},
    )
    with provisioned(dsn, bootstrap, config) as campaign:
        with psycopg.connect(dsn, autocommit=True) as conn:
            replace_service_digests(
                conn, config.schema_, {ROUTER_SERVICE: token_digest(service_token.encode())}
            )
        env = {
            **campaign.worker_env({"probe": f"probe-{uuid.uuid4().hex}"}),
            "LABELOPS_WORKER_PROCESSES": "1",
        }
        worker = WorkerProcess(env, tmp / f"worker-{key}.log")
        try:
            yield campaign, worker
        finally:
            worker.kill()


def produce(campaign: Campaign, key: str) -> None:
    campaign.produce_items(
        [{"id": f"{key}-{n:05d}", "payload": pairwise_payload(n)} for n in range(ITEMS[key])]
    )


@contextmanager
def router_process(
    campaigns: dict[str, tuple[Campaign, WorkerProcess]],
    tokens: dict[str, str],
    pool_tokens: dict[str, str],
    log_path: Path,
) -> Iterator[int]:
    def entry(key: str) -> dict[str, Any]:
        campaign, worker = campaigns[key]
        spec: dict[str, Any] = {"name": campaign.config.name, "url": worker.url}
        if key == "c":
            spec["requiredSkills"] = ["medical"]
        if key == "d":
            spec["priority"] = 1
        else:
            spec["weight"] = WEIGHTS[key]
        return spec

    config = {
        "pool": "crowd",
        "namespace": "test",
        "identity": {"tokens": {"secretRef": {"name": "crowd-tokens"}}},
        "skills": [{"name": "medical", "members": SKILLED}],
        "capacity": {"maxLeasesPerLabeler": 5},
        "campaigns": [entry(key) for key in campaigns],
    }
    port = free_port()
    env = {
        **os.environ,
        ENV_ROUTER_CONFIG: json.dumps(config),
        ENV_LABELER_DIGESTS: json.dumps(
            {who: token_digest(t.encode()).hex() for who, t in pool_tokens.items()}
        ),
        **{ENV_ROUTE_TOKEN_PREFIX + c.config.name: tokens[k] for k, (c, _) in campaigns.items()},
        "LABELOPS_ROUTER_HOST": "127.0.0.1",
        "LABELOPS_ROUTER_PORT": str(port),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "labelops.cli", "router"], env=env, stdout=log, stderr=log
        )

        def ready() -> bool:
            assert process.poll() is None, log_path.read_text()
            try:
                return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).ok
            except requests.RequestException:
                return False

        try:
            wait_for(ready, 60, lambda: f"router not ready:\n{log_path.read_text()}")
            yield port
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0, log_path.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)


def wait_ingested(campaign: Campaign, items: int) -> None:
    wait_for(lambda: campaign.count("items") == items, 90, lambda: "items not ingested")


def last_item_created(dsn: str, schema: str) -> float:
    """When the campaign's last item was stored (epoch seconds, like its labels')."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT extract(epoch FROM max(created_at))::float8 FROM {}").format(
                sql.Identifier(schema, "items")
            )
        ).fetchone()
    assert row is not None and row[0] is not None, f"no items in {schema}"
    return float(row[0])


def labels_in(campaign: Campaign) -> int:
    return campaign.count("labels")


def assert_shares(
    counts: dict[str, int], nominal: dict[str, float], what: str, names: dict[str, str]
) -> None:
    shares = shares_of(counts)
    shown = {k: f"{100 * shares[names[k]]:.1f}% ({counts[names[k]]})" for k in nominal}
    print(f"{what}: {shown}")
    for key, expected in nominal.items():
        actual = shares[names[key]]
        assert abs(actual - expected) <= TOLERANCE, (
            f"{what}: campaign {key} got {100 * actual:.1f}% of the labels, nominal "
            f"{100 * expected:.1f}% +-{100 * TOLERANCE:.0f} points; all: {shown}"
        )


def test_a_pool_of_three_campaigns_1_2_1_shares_absorbs_and_serves_priority_and_skills(
    postgres_dsn: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    service = {key: f"router-{key}-{uuid.uuid4().hex}" for key in ITEMS}
    pool_tokens = {who: f"pool-{who}-{uuid.uuid4().hex}" for who in LABELERS}
    with ExitStack() as stack:
        campaigns = {
            key: stack.enter_context(
                campaign_and_worker(key, postgres_dsn, kafka_bootstrap, tmp_path, service[key])
            )
            for key in ITEMS
        }
        for key in ("a", "b", "c"):
            produce(campaigns[key][0], key)
        for _, worker in campaigns.values():
            worker.wait_ready()
        for key in ("a", "b", "c"):
            wait_ingested(campaigns[key][0], ITEMS[key])
        names = {key: c.config.name for key, (c, _) in campaigns.items()}
        port = stack.enter_context(
            router_process(campaigns, service, pool_tokens, tmp_path / "router.log")
        )
        a, b, c, d = (campaigns[k][0] for k in "abcd")
        crowd = Crowd(port, pool_tokens).start()
        try:

            def labeling(condition: Any, timeout: float, what: str) -> None:
                wait_for(lambda: crowd.alive() and condition(), timeout, lambda: what)

            labeling(lambda: labels_in(a) >= ITEMS["a"], 120, "a labeled out")
            after_a = labels_in(b) + labels_in(c)
            labeling(lambda: labels_in(b) + labels_in(c) >= after_a + ABSORBED, 120, "b, c absorb")
            produce(d, "d")
            labeling(lambda: labels_in(d) >= ITEMS["d"], 240, "d labeled out")
            after_d = labels_in(b) + labels_in(c)
            labeling(lambda: labels_in(b) + labels_in(c) >= after_d + 50, 60, "b, c again")
        finally:
            run = crowd.stop()
        assert not run.errors, f"unexpected answers: {run.errors}"
        labels = stored_labels(
            postgres_dsn, {names[k]: campaigns[k][0].config.schema_ for k in ITEMS}
        )
        d_all_ingested = last_item_created(postgres_dsn, d.config.schema_)

    by = {k: [x for x in labels if x.campaign == names[k]] for k in ITEMS}
    start = labels[0].at
    a_last = by["a"][-1].at
    d_first, d_last = by["d"][0].at, by["d"][-1].at
    priority_0 = [names[k] for k in "abc"]

    # While all three had work: 1:2:1.
    assert_shares(
        counts_between(labels, start, a_last, priority_0),
        {"a": 0.25, "b": 0.5, "c": 0.25},
        "while a, b and c had work",
        names,
    )
    # a ran out: b and c absorb its share, 2:1.
    assert_shares(
        counts_between(labels, a_last + SLACK_SECONDS, d_first, [names["b"], names["c"]]),
        {"b": 2 / 3, "c": 1 / 3},
        "after a ran out, before d",
        names,
    )
    # d, priority 1, gets the labelers before any priority-0 campaign.
    # d "has work" once all its items are in: while its worker is still ingesting them,
    # labelers can drain what has arrived, get a 204 and be served b or c meanwhile (as
    # they should be: the router is work-conserving).
    d_in = d_all_ingested
    assert d_last - max(d_first, d_in) > 2 * SLACK_SECONDS, (
        f"d's items were all in {d_in - d_first:.2f}s after its first label and its last"
        f" label came {d_last - d_in:.2f}s after that"
    )
    window = (max(d_first, d_in) + SLACK_SECONDS, d_last - SLACK_SECONDS)
    print(
        f"d: first label {d_first - start:.2f}s, all items in {d_in - start:.2f}s,"
        f" last label {d_last - start:.2f}s after the first label of the run"
    )
    during_d = counts_between(labels, *window, priority_0)
    assert sum(during_d.values()) == 0, (
        f"priority-0 labels while d had work ({window[1] - window[0]:.2f}s from"
        f" {window[0] - d_first:.2f}s after d's first label): {during_d}"
    )
    # Skills: nobody without `medical` ever labeled in c; they did label elsewhere.
    in_c = {x.labeler for x in by["c"]}
    assert not in_c & set(UNSKILLED), (
        f"labelers without the skill labeled c: {in_c & set(UNSKILLED)}"
    )
    elsewhere = {x.labeler for x in labels if x.campaign != names["c"]}
    assert set(UNSKILLED) <= elsewhere, (
        f"unskilled labelers got no work: {set(UNSKILLED) - elsewhere}"
    )
    # Every label is attributed to a pool labeler.
    assert {x.labeler for x in labels} <= set(LABELERS)
