"""`labelops worker` as its own process, configured by the environment alone, as a pod runs it:
items in from Kafka, labels in over HTTP, labels out to Kafka, and a graceful SIGTERM.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from worker_harness import (
    TOKENS,
    WorkerProcess,
    campaign_config,
    pairwise_payload,
    provisioned,
    unique_name,
    wait_for,
)

from labelops.api.worker_configmap import ENV_CAMPAIGN
from labelops.worker.config import ENV_PROCESSES

pytestmark = pytest.mark.integration


def test_worker_ingests_serves_and_relays_from_its_environment(
    postgres_dsn: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = campaign_config(unique_name("proc"), {"type": "pairwise"}, labels_per_item=2)
    with provisioned(postgres_dsn, kafka_bootstrap, config) as campaign:
        worker = WorkerProcess(campaign.worker_env(), tmp_path / "worker.log")
        try:
            worker.wait_ready()
            campaign.produce_items(
                [{"id": f"doc/{n}", "payload": pairwise_payload(n)} for n in range(3)]
                + [{"id": "broken", "payload": {"prompt": "only a prompt"}}]
            )
            alice = requests.Session()
            alice.headers["Authorization"] = f"Bearer {TOKENS['alice']}"

            def progress() -> dict[str, int]:
                body: dict[str, int] = alice.get(f"{worker.url}/v1/progress").json()
                return body

            wait_for(lambda: progress()["itemsTotal"] == 3, 30, lambda: str(progress()))
            assert progress()["deadLettered"] == 1  # the payload does not fit pairwise

            receipts = []
            for _ in range(3):
                task = alice.post(f"{worker.url}/v1/tasks/claim").json()
                url = f"{worker.url}/v1/tasks/{quote(task['id'], safe='')}/labels"
                response = alice.post(url, json={"value": {"preferred": "tie"}})
                assert response.status_code == 201, response.text
                receipts.append(response.json())
            assert alice.post(f"{worker.url}/v1/tasks/claim").status_code == 204

            relayed = campaign.relayed_labels(expected=3)
            assert sorted(m["labelId"] for m in relayed) == sorted(r["labelId"] for r in receipts)
            assert {m["itemId"] for m in relayed} == {f"doc/{n}" for n in range(3)}
            assert worker.terminate() == 0, worker.log()
        finally:
            worker.kill()
    assert TOKENS["alice"] not in worker.log()
    assert "SIGTERM received: draining" in worker.log()


def test_sigterm_finishes_in_flight_requests_and_relays_every_accepted_label(
    postgres_dsn: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    labelers = {f"l{n}": f"token-{n}-0c9a71e3" for n in range(16)}
    config = campaign_config(
        unique_name("drain"), {"type": "pairwise"}, labels_per_item=16, items=400
    )
    with provisioned(postgres_dsn, kafka_bootstrap, config) as campaign:
        campaign.seed([(f"i{n}", pairwise_payload(n)) for n in range(400)])
        worker = WorkerProcess(campaign.worker_env(labelers), tmp_path / "worker.log")
        accepted: list[str] = []
        failures: list[str] = []
        lock = threading.Lock()
        enough = threading.Event()

        def label_until_refused(labeler: str) -> None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {labelers[labeler]}"
            while True:
                try:
                    task = session.post(f"{worker.url}/v1/tasks/claim", timeout=10)
                    if task.status_code in (503, 429):
                        return
                    if task.status_code != 200:
                        with lock:
                            failures.append(f"claim {task.status_code}: {task.text}")
                        return
                    url = f"{worker.url}/v1/tasks/{quote(task.json()['id'], safe='')}/labels"
                    done = session.post(url, json={"value": {"preferred": "tie"}}, timeout=10)
                except requests.ConnectionError:
                    return  # the listener closed
                if done.status_code == 503:
                    return  # draining: refused before any work was done
                with lock:
                    if done.status_code == 201:
                        accepted.append(done.json()["labelId"])
                        if len(accepted) >= 200:
                            enough.set()
                    else:
                        failures.append(f"submit {done.status_code}: {done.text}")

        try:
            worker.wait_ready()
            with concurrent.futures.ThreadPoolExecutor(len(labelers)) as pool:
                futures = [pool.submit(label_until_refused, labeler) for labeler in labelers]
                assert enough.wait(60), f"too slow: {len(accepted)} labels, {failures[:3]}"
                exit_code = worker.terminate()
                for future in futures:
                    future.result()
        finally:
            worker.kill()
        assert exit_code == 0, worker.log()
        assert not failures, failures[:5]
        # Every 201 the clients saw is committed, and the relay ran until the HTTP side
        # drained, so nothing is left in the outbox.
        assert campaign.count("labels") == len(accepted)
        assert campaign.count("outbox") == 0
        relayed = campaign.relayed_labels(expected=len(accepted))
        assert {m["labelId"] for m in relayed} == set(accepted)


def test_bad_configuration_exits_2_naming_the_variable() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "labelops.cli", "worker"],
        env={ENV_CAMPAIGN: "{not json", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "LABELOPS_CAMPAIGN is not a valid worker config" in done.stderr


def child_pids(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == parent and fields[0] != "Z":
                found.append(int(entry.name))
    return sorted(found)


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def healthz_requests(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("labelops_worker_http_requests_total{") and '"/healthz"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_several_http_processes_share_the_port_the_metrics_and_a_graceful_stop(
    postgres_dsn: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = campaign_config(unique_name("prefork"), {"type": "pairwise"}, items=20)
    with provisioned(postgres_dsn, kafka_bootstrap, config) as campaign:
        campaign.seed([(f"i{n}", pairwise_payload(n)) for n in range(20)])
        env = {**campaign.worker_env(), ENV_PROCESSES: "2"}
        worker = WorkerProcess(env, tmp_path / "worker.log")
        try:
            worker.wait_ready()
            http_processes = child_pids(worker.process.pid)
            assert len(http_processes) == 2, worker.log()
            # Each request on a connection of its own: either process may answer, and
            # /metrics, whichever answers it, counts them all.
            for _ in range(30):
                assert requests.get(f"{worker.url}/healthz", timeout=5).status_code == 200
            seen = {
                healthz_requests(requests.get(f"{worker.url}/metrics", timeout=5).text)
                for _ in range(10)
            }
            assert seen == {30.0}, seen

            alice = requests.Session()
            alice.headers["Authorization"] = f"Bearer {TOKENS['alice']}"
            task = alice.post(f"{worker.url}/v1/tasks/claim").json()
            accepted = []
            while task is not None:
                url = f"{worker.url}/v1/tasks/{quote(task['id'], safe='')}/labels?next=true"
                response = alice.post(url, json={"value": {"preferred": "tie"}})
                assert response.status_code == 201, response.text
                accepted.append(response.json()["labelId"])
                task = response.json()["next"]
            assert len(accepted) == 20
            assert worker.terminate() == 0, worker.log()
        finally:
            worker.kill()
        wait_for(lambda: not any(running(pid) for pid in http_processes), 10)
        assert campaign.count("outbox") == 0
        relayed = campaign.relayed_labels(expected=20)
        assert {m["labelId"] for m in relayed} == set(accepted)
    assert "in 2 HTTP processes" in worker.log()


def test_http_processes_stop_when_their_supervisor_is_killed(
    postgres_dsn: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    config = campaign_config(unique_name("orphan"), {"type": "pairwise"})
    with provisioned(postgres_dsn, kafka_bootstrap, config) as campaign:
        worker = WorkerProcess(
            {**campaign.worker_env(), ENV_PROCESSES: "2"}, tmp_path / "worker.log"
        )
        try:
            worker.wait_ready()
            http_processes = child_pids(worker.process.pid)
            assert len(http_processes) == 2, worker.log()
            worker.process.kill()  # SIGKILL: no chance to stop them itself
            worker.process.wait(10)
            # An HTTP process notices within half a second once it runs; one still starting
            # (importing, connecting) when its supervisor died notices when it is up.
            wait_for(lambda: not any(running(pid) for pid in http_processes), 30, worker.log)
        finally:
            worker.kill()
    assert "is gone: draining" in worker.log()
