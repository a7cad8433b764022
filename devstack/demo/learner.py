"""The campaign's built-in learner for the demo, started the way a cluster would start it.

When the operator wrote a learner Deployment (model.learner builtin), its pod template is run
as a local process like the workers' (devstack.podrunner), so what the operator writes is what
runs. When it did not (an operator without the learner side), `labelops learner` is started
here with the environment that Deployment is meant to set (labelops.learner.config), and the
demo says so.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from devstack import podrunner
from devstack.kafka import client_connection
from devstack.procs import Started, free_port, start_process, stop_pidfile, wait_until
from labelops.api.kafka_connection import ENV_BOOTSTRAP
from labelops.learner import config as learner_env

PROCESS = "learner"


@dataclass
class RunningLearner:
    process: Started
    port: int
    from_deployment: bool

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_serving(self, timeout: float = 60) -> None:
        """Until /healthz answers (ready waits for a model, which needs labels first)."""

        def alive() -> bool:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as reply:
                return int(reply.status) == 200

        wait_until(self.process, alive, timeout=timeout, what="alive (/healthz)")


def deployment_name(campaign: str) -> str:
    return f"{campaign}-learner"


def _operator_deployment(api: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    except client.ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def learner_environment(
    campaign: dict[str, Any], topics: dict[str, str], bootstrap: str, port: int
) -> dict[str, str]:
    """The environment of `labelops learner` for this campaign (labelops.learner.config)."""
    meta, spec = campaign["metadata"], campaign["spec"]
    learner = (spec.get("model") or {}).get("learner") or {}
    env = {
        **client_connection(bootstrap).security_env(),
        ENV_BOOTSTRAP: bootstrap,
        learner_env.ENV_CAMPAIGN: f"{meta['namespace']}/{meta['name']}",
        learner_env.ENV_TASK: json.dumps(spec["task"]),
        learner_env.ENV_ITEMS_TOPIC: topics["items"],
        learner_env.ENV_LABELS_TOPIC: topics["labels"],
        learner_env.ENV_PREDICTIONS_TOPIC: topics["predictions"],
        learner_env.ENV_PORT: str(port),
        learner_env.ENV_HOST: "127.0.0.1",
    }
    if "retrainLabels" in learner:
        env[learner_env.ENV_RETRAIN_LABELS] = str(learner["retrainLabels"])
    if "retrainSeconds" in learner:
        env[learner_env.ENV_RETRAIN_SECONDS] = str(learner["retrainSeconds"])
    return env


def start(
    api: client.ApiClient,
    campaign: dict[str, Any],
    topics: dict[str, str],
    env: dict[str, str],
    state_dir: Path,
) -> RunningLearner:
    namespace, name = campaign["metadata"]["namespace"], campaign["metadata"]["name"]
    deployment = deployment_name(name)
    port = free_port()
    if _operator_deployment(api, namespace, deployment):
        [pod] = podrunner.start_pods(
            api,
            namespace,
            deployment,
            state_dir,
            replicas=1,
            extra_env={learner_env.ENV_PORT: str(port), learner_env.ENV_HOST: "127.0.0.1"},
        )
        return RunningLearner(pod.process, port, from_deployment=True)
    stop_pidfile(state_dir / f"{PROCESS}.pid")  # one left by an earlier, interrupted demo
    started = start_process(
        PROCESS,
        [sys.executable, "-m", "labelops.cli", "learner"],
        state_dir,
        env={**env, **learner_environment(campaign, topics, env["LABELOPS_KAFKA_BOOTSTRAP"], port)},
    )
    return RunningLearner(started, port, from_deployment=False)


def stop(learner: RunningLearner, state_dir: Path) -> None:
    stop_pidfile(state_dir / f"{learner.process.name}.pid")
