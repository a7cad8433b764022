"""`make demo`: one RLHF campaign from `kubectl apply` to exported preference pairs, with
data quality and a model in the loop.

Starts the local stack, installs the CRD, runs the operator, applies the pairwise example
campaign (gold pairs, adaptive overlap, a built-in learner with auto-accept), starts its
workers from the Deployment the operator wrote and its learner, publishes items and gold
pairs to the campaign's items topic, lets simulated labelers (careful ones, and careless
ones including a random clicker) work through the worker API, shows live progress until
the campaign is Completed, and exports the labels as RLHF JSONL. The summary says who was
caught and blocked and on what figures (`labelops labelers`), what the model labeled and
how accurate its audits proved it, and whether the exported pairs follow the careful
labelers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, cast

from confluent_kafka import Consumer, Producer
from kubernetes import client, config

from devstack import kubeapply, podrunner, stack
from devstack.demo import learner as demo_learner
from devstack.demo import summary
from devstack.demo.display import Display
from devstack.demo.items import DemoItem, generate, generate_gold
from devstack.demo.labelers import CARELESS, SimulatedLabeler
from devstack.kafka import client_connection
from devstack.procs import (
    StackError,
    free_port,
    port_open,
    start_process,
    stop_pidfile,
    wait_until,
)
from labelops.api.campaign import GROUP, PLURAL, VERSION
from labelops.api.kafka_connection import connection_from_env
from labelops.api.naming import CampaignNames
from labelops.clients.kafka import KafkaAdmin
from labelops.clients.postgres import PostgresAdmin
from labelops.report.export import RlhfTally, write_export
from labelops.report.labelers import read_reports, render

REPO = stack.REPO_ROOT
EXAMPLE = REPO / "examples" / "helpfulness-pairwise.yaml"
# Gold pairs beside the items: enough that a labeler meets a fresh one at every gold turn.
GOLD_PAIRS = 40
# What every item cost before models and quality: the example's labelsPerItem of old.
LABELS_PER_ITEM_BEFORE = 3


def _step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def _start_operator(state_dir: Path, env: dict[str, str], namespace: str) -> None:
    health = free_port()
    started = start_process(
        "operator",
        # Watching only the demo's namespace: other campaigns on this control plane (the
        # tests' ones, say) belong to other operators.
        [sys.executable, "-m", "labelops.cli", "operator", "--namespace", namespace],
        state_dir,
        env={**env, "LABELOPS_HEALTH_PORT": str(health), "LABELOPS_METRICS_PORT": str(free_port())},
    )
    wait_until(started, lambda: port_open(health), timeout=60, what="serving /healthz")
    print(f"operator pid {started.pid}, log {started.log}")


def _campaign(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return cast(dict[str, Any], obj)


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return {}


def _wait_ready(api: client.ApiClient, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = _campaign(api, namespace, name)
        if _condition(obj, "Ready").get("status") == "True":
            return obj
        time.sleep(0.5)
    ready = _condition(_campaign(api, namespace, name), "Ready")
    raise SystemExit(
        f"campaign {namespace}/{name} not Ready after {timeout:.0f}s: "
        f"{ready.get('reason')}: {ready.get('message')} (see .stack/operator.log)"
    )


def _remove_earlier_run(
    api: client.ApiClient, env: dict[str, str], namespace: str, name: str
) -> None:
    """A campaign left by an earlier demo is deleted with its data, so this run starts clean.
    So is data whose campaign is gone without it (reclaimPolicy Retain keeps the schema and
    topics, e.g. when the control plane was stopped under the campaign)."""
    objects = client.CustomObjectsApi(api)
    try:
        _campaign(api, namespace, name)
    except client.ApiException as err:
        if err.status == 404:
            _drop_retained_data(env, namespace, name)
            return
        raise
    _step(f"Deleting {namespace}/{name} from an earlier demo run (reclaimPolicy Delete)")
    patch = {"spec": {"reclaimPolicy": "Delete"}}
    objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
    objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            _campaign(api, namespace, name)
        except client.ApiException as err:
            if err.status == 404:
                return
            raise
        time.sleep(0.5)
    raise SystemExit(f"{namespace}/{name} was not deleted within 120s (see .stack/operator.log)")


def _drop_retained_data(env: dict[str, str], namespace: str, name: str) -> None:
    names = CampaignNames(namespace, name)

    async def drop() -> list[str]:
        postgres = PostgresAdmin(env["LABELOPS_POSTGRES_DSN"])
        try:
            dropped = await postgres.drop(names.role, names.schema)
        finally:
            postgres.close()
        kafka = KafkaAdmin(connection_from_env(env))
        dropped += await kafka.delete(
            [names.items_topic, names.labels_topic, names.predictions_topic]
        )
        return dropped

    dropped = asyncio.run(drop())
    if dropped:
        _step(f"Dropped what an earlier demo run retained: {', '.join(dropped)}")


def _publish(bootstrap: str, topic: str, items: list[DemoItem]) -> None:
    producer = Producer(client_connection(bootstrap).client_config({"enable.idempotence": True}))
    for item in items:
        value = item.message()
        producer.produce(topic, key=item.id.encode(), value=json.dumps(value).encode())
        producer.poll(0)
    remaining = producer.flush(30)
    if remaining:
        raise SystemExit(f"{remaining} items were not acknowledged by Kafka within 30s")


def _relayed_label_ids(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> int:
    """Read the labels topic back: how many distinct labels the outbox relay delivered."""
    consumer = Consumer(
        client_connection(bootstrap).client_config(
            {
                "group.id": f"labelops-demo-check-{uuid.uuid4()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
    )
    consumer.subscribe([topic])
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=1.0):
                value = message.value()
                if message.error() is None and value is not None:
                    seen.add(json.loads(value)["labelId"])
    finally:
        consumer.close()
    return len(seen)


def _tokens(docs: list[dict[str, Any]], secret_name: str) -> dict[str, str]:
    for doc in docs:
        if doc["kind"] == "Secret" and doc["metadata"]["name"] == secret_name:
            return dict(doc["stringData"])
    raise SystemExit(f"{EXAMPLE} has no Secret {secret_name}")


def run(timeout: float) -> int:
    state_dir = stack.default_state_dir()
    _step("Starting the local stack (PostgreSQL, Kafka, Kubernetes control plane)")
    env = stack.up(state_dir)
    os.environ.update(env)
    config.load_kube_config(config_file=env["KUBECONFIG"])
    api = client.ApiClient()

    docs = kubeapply.load_documents(EXAMPLE)
    campaign = next(d for d in docs if d["kind"] == "LabelingCampaign")
    namespace = campaign["metadata"]["namespace"]

    _step("Installing the LabelingCampaign CRD and starting the operator")
    kubeapply.install_crds(api, REPO / "crds")
    kubeapply.ensure_namespace(api, namespace)
    stop_pidfile(state_dir / "operator.pid")  # one left by an earlier, interrupted demo
    _start_operator(state_dir, env, namespace)
    try:
        return _label_the_campaign(api, env, docs, campaign, state_dir, timeout)
    finally:
        # The demo's operator and workers end with it, whatever happened; the stack stays.
        stop_pidfile(state_dir / "operator.pid")


def _label_the_campaign(
    api: client.ApiClient,
    env: dict[str, str],
    docs: list[dict[str, Any]],
    campaign: dict[str, Any],
    state_dir: Path,
    timeout: float,
) -> int:
    namespace, name = campaign["metadata"]["namespace"], campaign["metadata"]["name"]
    _remove_earlier_run(api, env, namespace, name)
    _step(f"kubectl apply -f {EXAMPLE.relative_to(REPO)}")
    kubeapply.apply(api, docs)
    obj = _wait_ready(api, namespace, name, timeout=120)
    status = obj["status"]
    print(f"Ready: topics {status['topics']['items']}, {status['topics']['labels']}; "
          f"schema {status['schema']}")  # fmt: skip

    _step("Starting the campaign's workers from the Deployment the operator wrote")
    worker = f"{name}-worker"
    pods = podrunner.start_pods(api, namespace, worker, state_dir)
    if not pods:
        raise SystemExit(f"the operator scaled {worker} to 0 replicas; see .stack/operator.log")
    for pod in pods:
        pod.wait_ready()
        print(f"{pod.name}: {pod.url} (log {pod.process.log})")

    stop = threading.Event()
    learner: demo_learner.RunningLearner | None = None
    try:
        if ((campaign["spec"].get("model") or {}).get("learner") or {}).get("type") == "builtin":
            learner = _start_learner(api, campaign, status["topics"], env, state_dir)
        items = generate(campaign["spec"]["target"]["items"])
        gold = generate_gold(GOLD_PAIRS)
        _step(
            f"Publishing {len(items)} items and {len(gold)} gold pairs (their known answer "
            f"beside them) to {status['topics']['items']}"
        )
        _publish(env["LABELOPS_KAFKA_BOOTSTRAP"], status["topics"]["items"], [*gold, *items])

        tokens = _tokens(docs, campaign["spec"]["labelers"]["tokenSecretRef"]["name"])
        by_id = {item.id: item for item in [*gold, *items]}
        labelers = [
            SimulatedLabeler(who, token, pods[i % len(pods)].url, by_id, stop, seed=i)
            for i, (who, token) in enumerate(sorted(tokens.items()))
        ]
        _step(
            f"{len(labelers)} labelers at work: "
            + ", ".join(f"{lab.labeler} ({lab.temperament_name})" for lab in labelers)
        )
        print(f"Labeling page: {pods[0].url}/  (sign in with a token from {EXAMPLE.name})")
        for labeler in labelers:
            labeler.start()
        display = Display(sys.stdout)
        deadline = time.monotonic() + timeout
        while True:
            obj = _campaign(api, namespace, name)
            display.show(obj)
            if (obj.get("status") or {}).get("phase") == "Completed":
                break
            if time.monotonic() > deadline:
                display.done()
                print(f"campaign not Completed within {timeout:.0f}s", file=sys.stderr)
                return 1
            time.sleep(1)
        display.done()
    finally:
        stop.set()
        podrunner.stop_pods(pods, state_dir)
        if learner is not None:
            demo_learner.stop(learner, state_dir)

    _report_labelers(labelers)
    return _export(api, namespace, name, obj, state_dir, by_id)


def _start_learner(
    api: client.ApiClient,
    campaign: dict[str, Any],
    topics: dict[str, str],
    env: dict[str, str],
    state_dir: Path,
) -> demo_learner.RunningLearner:
    name = campaign["metadata"]["name"]
    deployment = demo_learner.deployment_name(name)
    learner = demo_learner.start(api, campaign, topics, env, state_dir)
    if learner.from_deployment:
        _step(
            f"Starting the campaign's learner from the Deployment the operator wrote ({deployment})"
        )
    else:
        _step("Starting the campaign's built-in learner (`labelops learner`)")
        print(
            f"the operator wrote no Deployment {deployment}: the demo starts `labelops learner` "
            "itself, with the environment that Deployment sets"
        )
    learner.wait_serving()
    print(f"{learner.process.name}: {learner.url} (log {learner.process.log}); "
          f"predictions to {topics.get('predictions')}")  # fmt: skip
    return learner


def _report_labelers(labelers: list[SimulatedLabeler]) -> None:
    _step("What the labelers did")
    for lab in labelers:
        outcomes = Counter({k: v for k, v in lab.tally.outcomes.items() if k != "idle"})
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
        note = f"  ({lab.tally.note})" if lab.tally.note else ""
        print(f"  {lab.labeler:6} {summary}{note}")


def _export(
    api: client.ApiClient,
    namespace: str,
    name: str,
    obj: dict[str, Any],
    state_dir: Path,
    by_id: dict[str, DemoItem],
) -> int:
    import base64

    import psycopg

    status = obj["status"]
    schema = status["schema"]
    secret = client.CoreV1Api(api).read_namespaced_secret(status["databaseSecret"], namespace)
    dsn = base64.b64decode((secret.data or {})["dsn"]).decode()
    out_dir = state_dir / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.rlhf.jsonl"
    with psycopg.connect(dsn) as conn:
        with target.open("wb") as out:
            tally = write_export(conn, schema, "rlhf", out)
        reports = read_reports(conn, schema)
        spend = summary.label_spend(conn, schema)
        versions = summary.version_figures(conn, schema)
        stored = summary.all_labels(conn, schema)
    assert isinstance(tally, RlhfTally)
    _step("Done: the campaign is Completed")
    progress = status.get("progress") or {}
    items = int(obj["spec"]["target"]["items"])
    print(f"  accepted labels: {progress.get('labels')} on {progress.get('itemsCompleted')} items"
          f" in Postgres schema {schema}")  # fmt: skip
    relayed = _relayed_label_ids(
        os.environ["LABELOPS_KAFKA_BOOTSTRAP"], status["topics"]["labels"], stored
    )
    print(f"  relayed to Kafka topic {status['topics']['labels']}: {relayed} distinct labels "
          f"of {stored} stored (gold answers and excluded ones too)")  # fmt: skip

    _step(f"Data quality: labelops labelers {name} -n {namespace}")
    print(render(reports))
    caught = summary.caught_lines(reports, CARELESS)
    for line in caught or ["nobody was blocked"]:
        print(f"  caught: {line}" if caught else f"  {line}")

    _step("Models in the loop")
    for line in summary.model_lines(
        status.get("model"), versions, spend, items, LABELS_PER_ITEM_BEFORE
    ):
        print(f"  {line}")

    _step("Exported preference pairs")
    grade = summary.grade_pairs(target, by_id)
    print(f"  RLHF pairs: {target} ({tally.written} pairs, {tally.ties} ties left out)")
    print(f"  {grade.careful} of {grade.pairs} exported pairs choose the response careful "
          "labelers prefer")  # fmt: skip
    if grade.first is not None:
        first = json.dumps(grade.first, ensure_ascii=False)
        print(f"  first pair: {first[:300]}{'…' if len(first) > 300 else ''}")
        verdict = "prefers" if grade.first_careful else "does NOT prefer"
        print(f"  the first pair {verdict} the careful answer "
              f"(chosen {grade.first['chosen_id']!r}: {grade.first['chosen'][:60]!r})")  # fmt: skip
    print("  again any time: labelops export "
          f"{name} -n {namespace} --format rlhf   |   labelops status -n {namespace}"
          f"   |   labelops labelers {name} -n {namespace}")  # fmt: skip
    print("  the stack keeps running; stop it with: make stack-down")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.demo", description=__doc__)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to reach Completed")
    args = parser.parse_args()
    try:
        return run(args.timeout)
    except StackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
