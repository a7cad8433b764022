"""`labelops router` as a process in front of three real `labelops worker` processes (real
PostgreSQL and Kafka), each campaign's schema knowing the router by its service token's
digest: labelers sign in to the router with the pool's tokens (or an OIDC JWT of a loopback
issuer) and their claims, labels and releases reach the right worker, attributed to them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import requests
from psycopg import sql
from test_oidc import AUDIENCE, Issuer, claims, issuer, published, rsa_key, sign
from worker_harness import (
    TOKENS,
    Campaign,
    WorkerProcess,
    campaign_config,
    pairwise_payload,
    provisioned,
    unique_name,
    wait_for,
)

from devstack.procs import free_port
from labelops.api.pool_router import (
    ENV_LABELER_DIGESTS,
    ENV_ROUTE_TOKEN_PREFIX,
    ENV_ROUTER_CONFIG,
    ROUTER_SERVICE,
)
from labelops.store.labeler_tokens import replace_service_digests, token_digest

__all__ = ["issuer"]  # the loopback identity provider fixture, shared with test_oidc

pytestmark = pytest.mark.integration

ITEMS = 150
POOL_TOKENS = {
    "ann": "pool-ann-0c7d2e91",
    "ben": "pool-ben-5a1f0b33",
    "pat": "pool-pat-77e0c4d1",
    "cat": "pool-cat-2b9e6a10",
    "sam": "pool-sam-d41c8f02",
    "kim": "pool-kim-9f3a5e77",
}
LABEL = {"value": {"preferred": "tie"}}


@dataclass
class Worker:
    name: str
    campaign: Campaign
    process: WorkerProcess
    token: str

    def labelers_of_labels(self) -> dict[str, str]:
        schema = self.campaign.config.schema_
        with self.campaign.pool.connection() as conn:
            rows = conn.execute(
                sql.SQL(
                    "SELECT i.external_id, l.labeler FROM {} l JOIN {} i ON i.id = l.item_id"
                ).format(sql.Identifier(schema, "labels"), sql.Identifier(schema, "items"))
            ).fetchall()
        return {item_id: labeler for item_id, labeler in rows}

    def leases_of(self, labeler: str) -> int:
        # What the worker itself holds for the labeler, asked as the router.
        response = requests.get(
            f"{self.process.url}/v1/me",
            headers={"Authorization": f"Bearer {self.token}", "Labelops-Labeler": labeler},
            timeout=5,
        )
        assert response.status_code == 200, response.text
        return int(response.json()["activeLeases"])


@pytest.fixture(scope="module")
def workers(
    postgres_dsn: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Worker]]:
    with (
        started_worker("a", postgres_dsn, kafka_bootstrap, tmp_path_factory) as a,
        started_worker("b", postgres_dsn, kafka_bootstrap, tmp_path_factory) as b,
        started_worker("c", postgres_dsn, kafka_bootstrap, tmp_path_factory) as c,
    ):
        yield {"a": a, "b": b, "c": c}


@contextmanager
def started_worker(
    letter: str,
    dsn: str,
    bootstrap: str,
    tmp: pytest.TempPathFactory,
    *,
    task: Mapping[str, Any] | None = None,
    payload: Callable[[int], dict[str, Any]] = pairwise_payload,
    items: int = ITEMS,
    labels_per_item: int = 1,
) -> Iterator[Worker]:
    """A worker of a pairwise campaign (or of task, its items' payloads from payload),
    items "<letter>/item <n>", knowing the router by its service token."""
    config = campaign_config(
        unique_name(f"rt{letter}"),
        task or {"type": "pairwise"},
        items=items,
        labels_per_item=labels_per_item,
    )
    token = f"router-service-{letter}-{os.urandom(8).hex()}"
    with provisioned(dsn, bootstrap, config) as campaign:
        campaign.seed([(f"{letter}/item {n}", payload(n)) for n in range(items)])
        with psycopg.connect(dsn, autocommit=True) as conn:
            replace_service_digests(
                conn, config.schema_, {ROUTER_SERVICE: token_digest(token.encode())}
            )
        env = {**campaign.worker_env(TOKENS), "LABELOPS_WORKER_PROCESSES": "1"}
        process = WorkerProcess(env, tmp.mktemp(f"worker-{letter}") / "worker.log")
        try:
            process.wait_ready()
            yield Worker(config.name, campaign, process, token)
        finally:
            process.kill()


class RouterProcess:
    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labelops.cli", "router"],
            env={
                **os.environ,
                **env,
                "LABELOPS_ROUTER_HOST": "127.0.0.1",
                "LABELOPS_ROUTER_PORT": str(self.port),
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"router exited with {self.process.returncode}:\n{self.log()}")
        try:
            return requests.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            return False

    def session(self, labeler: str) -> requests.Session:
        return bearer(POOL_TOKENS[labeler])

    def pool(self) -> dict[str, dict[str, Any]]:
        body = requests.get(f"{self.url}/v1/pool", timeout=5).json()
        return {c["name"]: c for c in body["campaigns"]}

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        finally:
            self._log.close()


def bearer(token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def campaign_entry(worker: Worker, **spec: Any) -> dict[str, Any]:
    return {"name": worker.name, "url": worker.process.url, **spec}


@contextmanager
def router(
    workers: Mapping[str, Worker],
    tmp_path: Path,
    entries: list[dict[str, Any]],
    *,
    identity: dict[str, Any] | None = None,
    skills: list[dict[str, Any]] | None = None,
    capacity: int = 5,
) -> Iterator[RouterProcess]:
    config = {
        "pool": "crowd",
        "namespace": "test",
        "identity": identity or {"tokens": {"secretRef": {"name": "crowd-tokens"}}},
        "skills": skills or [],
        "capacity": {"maxLeasesPerLabeler": capacity},
        "campaigns": entries,
    }
    env = {
        ENV_ROUTER_CONFIG: json.dumps(config),
        ENV_LABELER_DIGESTS: json.dumps(
            {who: token_digest(token.encode()).hex() for who, token in POOL_TOKENS.items()}
        ),
        **{ENV_ROUTE_TOKEN_PREFIX + w.name: w.token for w in workers.values()},
    }
    process = RouterProcess(env, tmp_path / "router.log")
    try:
        wait_for(process.ready, 30, lambda: f"router not ready:\n{process.log()}")
        yield process
        assert process.stop() == 0, process.log()
        for worker in workers.values():
            assert worker.token not in process.log()
    finally:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait(10)


def claimed(session: requests.Session, url: str) -> dict[str, Any]:
    response = session.post(f"{url}/v1/tasks/claim")
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


def task_path(url: str, task_id: str, action: str) -> str:
    return f"{url}/v1/tasks/{quote(task_id, safe='')}/{action}"


def problem(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


def test_claims_are_routed_and_labels_and_releases_reach_the_right_worker(
    workers: dict[str, Worker], tmp_path: Path
) -> None:
    a, b = workers["a"], workers["b"]
    with router(workers, tmp_path, [campaign_entry(a), campaign_entry(b)]) as rt:
        ann = rt.session("ann")
        first, second = claimed(ann, rt.url), claimed(ann, rt.url)
        assert {first["campaign"], second["campaign"]} == {a.name, b.name}
        for task in (first, second):
            campaign, _, item_id = task["id"].partition(":")
            assert campaign == task["campaign"] and item_id.startswith(
                "a/" if campaign == a.name else "b/"
            )
        assert a.leases_of("ann") == 1 and b.leases_of("ann") == 1
        me = ann.get(f"{rt.url}/v1/me").json()
        assert me["labeler"] == "ann" and me["leases"] == {a.name: 1, b.name: 1}

        to_label, to_release = (first, second) if first["campaign"] == a.name else (second, first)
        receipt = ann.post(task_path(rt.url, to_label["id"], "labels"), json=LABEL)
        assert receipt.status_code == 201, receipt.text
        assert receipt.json()["itemId"] == to_label["id"]
        assert a.labelers_of_labels()[to_label["id"].partition(":")[2]] == "ann"
        released = ann.post(task_path(rt.url, to_release["id"], "release"))
        assert released.status_code == 200, released.text
        assert a.leases_of("ann") == 0 and b.leases_of("ann") == 0
        assert ann.get(f"{rt.url}/v1/me").json()["activeLeases"] == 0

        # A retried submission with its Idempotency-Key gets the first one's receipt.
        task = claimed(ann, rt.url)
        key = {"Idempotency-Key": "retry-7f3e"}
        once = ann.post(task_path(rt.url, task["id"], "labels"), json=LABEL, headers=key)
        again = ann.post(task_path(rt.url, task["id"], "labels"), json=LABEL, headers=key)
        assert (once.status_code, again.status_code) == (201, 200), again.text
        assert again.json()["replayed"] is True


def test_unknown_campaign_is_404_and_a_bad_token_401(
    workers: dict[str, Worker], tmp_path: Path
) -> None:
    with router(workers, tmp_path, [campaign_entry(workers["a"])]) as rt:
        ben = rt.session("ben")
        unknown = problem(ben.post(task_path(rt.url, "nope:item-1", "labels"), json=LABEL), 404)
        assert "'nope'" in unknown["detail"] and unknown["campaign"] == "nope"
        problem(ben.post(task_path(rt.url, "no-campaign-in-it", "release")), 404)
        refused = bearer("not-a-pool-token").post(f"{rt.url}/v1/tasks/claim")
        assert problem(refused, 401)["reason"] == "unknown-token"
        assert refused.headers["WWW-Authenticate"].startswith('Bearer realm="labelops"')
        missing = requests.post(f"{rt.url}/v1/tasks/claim", timeout=5)
        assert problem(missing, 401)["reason"] == "missing-credentials"
        # A worker's own labeler token is not a pool token.
        problem(bearer(TOKENS["alice"]).post(f"{rt.url}/v1/tasks/claim"), 401)


def test_an_unskilled_labeler_never_gets_the_skilled_campaign(
    workers: dict[str, Worker], tmp_path: Path
) -> None:
    a, b = workers["a"], workers["b"]
    entries = [campaign_entry(a), campaign_entry(b, requiredSkills=["python"])]
    skills = [{"name": "python", "members": ["pat"]}]
    with router(workers, tmp_path, entries, skills=skills) as rt:
        ben, pat = rt.session("ben"), rt.session("pat")
        for _ in range(6):
            task = claimed(ben, rt.url)
            assert task["campaign"] == a.name
            assert ben.post(task_path(rt.url, task["id"], "labels"), json=LABEL).status_code == 201
        got = {claimed(pat, rt.url)["campaign"] for _ in range(3)}
        assert b.name in got
        assert pat.get(f"{rt.url}/v1/me").json()["skills"] == ["python"]


def test_the_higher_priority_tier_is_served_first(
    workers: dict[str, Worker], tmp_path: Path
) -> None:
    a, b = workers["a"], workers["b"]
    entries = [campaign_entry(a, weight=5), campaign_entry(b, priority=10)]
    with router(workers, tmp_path, entries) as rt:
        kim = rt.session("kim")
        for _ in range(4):
            task = claimed(kim, rt.url)
            assert task["campaign"] == b.name
            done = kim.post(task_path(rt.url, task["id"], "labels") + "?next=false", json=LABEL)
            assert done.status_code == 201, done.text


def test_pool_capacity_is_429_until_a_lease_is_given_back(
    workers: dict[str, Worker], tmp_path: Path
) -> None:
    entries = [campaign_entry(workers["a"]), campaign_entry(workers["b"])]
    with router(workers, tmp_path, entries, capacity=2) as rt:
        cat = rt.session("cat")
        held = [claimed(cat, rt.url), claimed(cat, rt.url)]
        full = cat.post(f"{rt.url}/v1/tasks/claim")
        body = problem(full, 429)
        assert (
            body["reason"] == "max_leases_per_labeler" and "maxLeasesPerLabeler 2" in body["detail"]
        )
        assert int(full.headers["Retry-After"]) >= 1
        assert cat.post(task_path(rt.url, held[0]["id"], "release")).status_code == 200
        claimed(cat, rt.url)


def test_weights_1_2_1_share_the_labels_1_2_1(workers: dict[str, Worker], tmp_path: Path) -> None:
    a, b, c = workers["a"], workers["b"], workers["c"]
    entries = [campaign_entry(a), campaign_entry(b, weight=2), campaign_entry(c)]
    with router(workers, tmp_path, entries) as rt:
        sam = rt.session("sam")
        task = claimed(sam, rt.url)
        served = {a.name: 0, b.name: 0, c.name: 0}
        for _ in range(40):
            served[task["campaign"]] += 1
            # The page's way: the label and the next task in one call.
            receipt = sam.post(task_path(rt.url, task["id"], "labels") + "?next=true", json=LABEL)
            assert receipt.status_code == 201, receipt.text
            task = receipt.json()["next"]
            assert task is not None
        assert served == {a.name: 10, b.name: 20, c.name: 10}
        pool = rt.pool()
        assert pool[b.name]["nominalShare"] == 0.5 and pool[a.name]["nominalShare"] == 0.25
        assert abs(pool[b.name]["actualShare"] - 0.5) < 0.05
        metrics = requests.get(f"{rt.url}/metrics", timeout=5).text
        assert f'labelops_router_claims_total{{campaign="{b.name}",outcome="leased"}}' in metrics


def test_labelers_submitting_at_once_are_relayed_in_batches_each_answered_as_their_own(
    workers: dict[str, Worker], tmp_path: Path
) -> None:
    c = workers["c"]
    with router(workers, tmp_path, [campaign_entry(c)]) as rt:
        labelers = ["ann", "ben", "pat", "cat", "sam", "kim"]
        labeled: dict[str, list[str]] = {who: [] for who in labelers}

        def label_four(who: str) -> None:
            session = rt.session(who)
            task = claimed(session, rt.url)
            for n in range(4):
                url = task_path(rt.url, task["id"], "labels") + "?next=true"
                receipt = session.post(url, json=LABEL, headers={"Idempotency-Key": f"{who}-{n}"})
                assert receipt.status_code == 201, receipt.text
                assert receipt.json()["itemId"] == task["id"]
                labeled[who].append(task["id"].partition(":")[2])
                task = receipt.json()["next"]
                assert task is not None and task["campaign"] == c.name

        with ThreadPoolExecutor(len(labelers)) as pool:
            list(pool.map(label_four, labelers))
        stored = c.labelers_of_labels()
        for who, items in labeled.items():
            assert [stored[item] for item in items] == [who] * 4
        metrics = requests.get(f"{rt.url}/metrics", timeout=5).text
        relayed = prometheus_value(
            metrics, f'labelops_router_relayed_batch_submissions_sum{{campaign="{c.name}"}}'
        )
        batches = prometheus_value(
            metrics, f'labelops_router_relayed_batch_submissions_count{{campaign="{c.name}"}}'
        )
        assert relayed == 24 and 1 <= batches <= 24, metrics

        # What cannot go in a batch goes alone, and the worker's own refusal answers it.
        sam = rt.session("sam")
        task = claimed(sam, rt.url)
        text = sam.post(
            task_path(rt.url, task["id"], "labels"),
            data=b"tie",
            headers={"Content-Type": "text/plain"},
        )
        assert problem(text, 415)["type"].endswith("/unsupported-media-type")
        broken = sam.post(
            task_path(rt.url, task["id"], "labels"),
            data=b'{"value": ',
            headers={"Content-Type": "application/json"},
        )
        assert problem(broken, 400)["type"].endswith("/invalid-json")
        invalid = problem(
            sam.post(task_path(rt.url, task["id"], "labels"), json={"value": {"preferred": 3}}),
            422,
        )
        assert invalid["type"].endswith("/invalid-label"), invalid


def prometheus_value(exposition: str, sample: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(sample + " "):
            return float(line.rpartition(" ")[2])
    raise AssertionError(f"no sample {sample} in the exposition")


def test_oidc_labelers_sign_in_at_the_router_with_their_groups(
    workers: dict[str, Worker], issuer: Issuer, tmp_path: Path
) -> None:
    a, b = workers["a"], workers["b"]
    key = rsa_key()
    issuer.keys.append(published(key, "router-key"))
    identity = {"oidc": {"issuer": issuer.url, "audience": AUDIENCE, "usernameClaim": "email"}}
    entries = [campaign_entry(a, requiredSkills=["python"]), campaign_entry(b, priority=-1)]
    skills = [{"name": "python", "groups": ["coders"]}]
    with router(workers, tmp_path, entries, identity=identity, skills=skills) as rt:
        token = sign(claims(issuer, email="oona@example.com"), key, kid="router-key")
        oona = bearer(token)
        task = claimed(oona, rt.url)
        assert task["campaign"] == a.name  # her group gives her python, the higher tier
        assert oona.post(task_path(rt.url, task["id"], "labels"), json=LABEL).status_code == 201
        assert a.labelers_of_labels()[task["id"].partition(":")[2]] == "oona@example.com"
        no_group = sign(claims(issuer, email="otto@example.com", groups=[]), key, kid="router-key")
        assert claimed(bearer(no_group), rt.url)["campaign"] == b.name
        expired = sign(claims(issuer, exp=1), key, kid="router-key")
        assert problem(bearer(expired).post(f"{rt.url}/v1/tasks/claim"), 401)["reason"] == (
            "expired"
        )


def test_a_killed_worker_leaves_the_others_served(
    workers: dict[str, Worker], tmp_path: Path
) -> None:
    a, c = workers["a"], workers["c"]
    with router(workers, tmp_path, [campaign_entry(a), campaign_entry(c, priority=1)]) as rt:
        ann = rt.session("ann")
        held = claimed(ann, rt.url)
        assert held["campaign"] == c.name
        c.process.kill()
        for _ in range(3):
            task = claimed(ann, rt.url)
            assert task["campaign"] == a.name
            assert ann.post(task_path(rt.url, task["id"], "labels"), json=LABEL).status_code == 201
        lost = problem(ann.post(task_path(rt.url, held["id"], "labels"), json=LABEL), 503)
        assert lost["campaign"] == c.name and c.name in lost["detail"]
        assert int(lost["retryAfter"]) >= 1
