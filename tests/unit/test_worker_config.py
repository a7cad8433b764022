"""The worker's environment: what it needs, and errors that name the variable to fix."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from labelops.worker.config import ConfigError, ResponseValidation, settings_from_env
from labelops.worker.cpus import cgroup_cpu_quota, usable_cpus

CAMPAIGN = {
    "namespace": "human-data",
    "name": "helpfulness",
    "task": {"type": "pairwise", "instructions": "Pick one."},
    "target": {"items": 10, "labelsPerItem": 3},
    "quotas": {},
    "schema": "lc_human_data_helpfulness_0a1b2c3d",
    "topics": {"items": "t.items", "labels": "t.labels"},
    "consumerGroup": "t.worker",
}


def environ(**overrides: Any) -> dict[str, str]:
    env = {
        "LABELOPS_CAMPAIGN": json.dumps(CAMPAIGN),
        "LABELOPS_POSTGRES_DSN": "postgresql://u:p@db:5432/labels",
        "LABELOPS_KAFKA_BOOTSTRAP": "kafka:9092",
        "LABELOPS_TOKEN_alice": "secret-alice-1",
        "LABELOPS_TOKEN_bob.smith": "secret-bob-2\n",
        "HOME": "/root",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def test_a_complete_environment_gives_every_setting() -> None:
    settings = settings_from_env(environ(LABELOPS_WORKER_PORT="9090"))
    assert settings.campaign.name == "helpfulness"
    assert settings.campaign.target.labels_per_item == 3
    # Labeler ids are the Secret's keys; a trailing newline from a file-made Secret goes.
    assert settings.tokens == {"alice": "secret-alice-1", "bob.smith": "secret-bob-2"}
    assert settings.port == 9090
    assert settings.host == "0.0.0.0"
    assert settings.response_validation is ResponseValidation.LOG


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"LABELOPS_CAMPAIGN": None}, "LABELOPS_CAMPAIGN is not set"),
        ({"LABELOPS_CAMPAIGN": "{oops"}, "LABELOPS_CAMPAIGN is not a valid worker config"),
        (
            {"LABELOPS_CAMPAIGN": json.dumps({**CAMPAIGN, "target": {"items": 0}})},
            "target.items",
        ),
        ({"LABELOPS_POSTGRES_DSN": " "}, "LABELOPS_POSTGRES_DSN is not set"),
        ({"LABELOPS_KAFKA_BOOTSTRAP": None}, "LABELOPS_KAFKA_BOOTSTRAP is not set"),
        ({"LABELOPS_WORKER_PORT": "http"}, "LABELOPS_WORKER_PORT='http' is not an integer"),
        ({"LABELOPS_WORKER_PORT": "70000"}, "allowed 0..65535"),
        ({"LABELOPS_WORKER_THREADS": "0"}, "LABELOPS_WORKER_THREADS=0 is out of range"),
        ({"LABELOPS_RESPONSE_VALIDATION": "loud"}, "allowed off, log, strict"),
        ({"LABELOPS_TOKEN_carol": "  "}, "LABELOPS_TOKEN_carol is empty"),
        ({"LABELOPS_TOKEN_": "x"}, "LABELOPS_TOKEN_ names no labeler"),
        ({"LABELOPS_TOKEN_carol": "secret-alice-1"}, "hold the same token"),
    ],
)
def test_a_bad_environment_names_the_variable(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")) as err:
        settings_from_env(environ(**overrides))
    assert "secret-alice-1" not in str(err.value)


def test_http_processes_default_to_the_usable_cores_and_share_the_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("labelops.worker.config.usable_cpus", lambda: 16)
    settings = settings_from_env(environ(LABELOPS_WORKER_THREADS="6"))
    assert settings.processes == 2, "capped: each process costs memory"
    assert settings.listen_fd is None
    # Six database threads shared by the processes, one batch writer each: 2 x (3 + 1)
    # connections, plus ingest and relay.
    assert (settings.threads, settings.connections_per_process) == (6, 3)
    assert (settings.batch_writers, settings.database_threads) == (1, 3)
    monkeypatch.setattr("labelops.worker.config.usable_cpus", lambda: 1)
    alone = settings_from_env(environ())
    assert (alone.processes, alone.threads, alone.database_threads) == (1, 4, 4)
    assert alone.batch_writers == 2, "one process overlaps two batches itself"
    monkeypatch.setattr("labelops.worker.config.usable_cpus", lambda: 1)
    assert settings_from_env(environ()).processes == 1
    assert settings_from_env(environ(LABELOPS_WORKER_PROCESSES="3")).processes == 3
    with pytest.raises(ConfigError, match="LABELOPS_WORKER_PROCESSES=0 is out of range"):
        settings_from_env(environ(LABELOPS_WORKER_PROCESSES="0"))


def test_usable_cpus_follow_the_cgroup_cpu_limit(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert cgroup_cpu_quota(cpu_max) == 1.5
    assert usable_cpus(cpu_max) == min(2, len(os.sched_getaffinity(0)))
    cpu_max.write_text("max 100000\n")
    assert cgroup_cpu_quota(cpu_max) is None
    assert usable_cpus(cpu_max) == len(os.sched_getaffinity(0))
    assert cgroup_cpu_quota(tmp_path / "absent") is None
