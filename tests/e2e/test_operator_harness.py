"""Shared pieces of the operator's end-to-end tests (no tests of its own).

The operator runs as a real process (`labelops operator`), exactly as in production, so a
test can kill it, restart it, or point it at a dead Kafka. Waiting is done by watching the
campaign through the API server until a predicate holds, never by sleeping.

Test modules import what they need from here; pytest finds this module because the test
directory is on sys.path (rootdir-relative "prepend" import mode).
"""

from __future__ import annotations

import base64
import secrets
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
import yaml
from confluent_kafka import TopicCollection
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from kubernetes import client, dynamic, watch

from devstack import kubeapply
from devstack.kafka import client_connection
from devstack.procs import (
    Started,
    TimedOut,
    free_port,
    log_tail,
    pid_alive,
    poll_until,
    port_open,
    start_process,
    stop_pidfile,
    wait_until,
)
from labelops.api.campaign import GROUP, PLURAL, VERSION
from labelops.clients.postgres import LOCK_TABLE, OPERATOR_SCHEMA, TAKE_PROVISIONING_LOCK

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "helpfulness-pairwise.yaml"
CRD_DIR = REPO / "crds"

Campaign = dict[str, Any]


# --- the operator process ---------------------------------------------------------------


class Operator:
    """`labelops operator` as a child process with its own health and metrics ports."""

    def __init__(self, state_dir: Path, env: dict[str, str], namespace: str) -> None:
        self.state_dir = state_dir
        self.env = env
        self.namespace = namespace
        self.started: Started | None = None
        self.metrics_port = 0
        self.starts = 0

    def running(self) -> bool:
        return self.started is not None and pid_alive(self.started.pid)

    def start(self, **overrides: str) -> None:
        assert not self.running(), "already running"
        health, self.metrics_port = free_port(), free_port()
        self.starts += 1
        self.started = start_process(
            f"operator-{self.namespace}-{self.starts}",
            [sys.executable, "-m", "labelops.cli", "operator", "--namespace", self.namespace],
            self.state_dir,
            env={
                **self.env,
                "LABELOPS_HEALTH_PORT": str(health),
                "LABELOPS_METRICS_PORT": str(self.metrics_port),
                **overrides,
            },
        )
        wait_until(self.started, lambda: port_open(health), 60, "serving /healthz")

    def _pidfile(self) -> Path:
        assert self.started is not None
        return self.state_dir / f"{self.started.name}.pid"

    def stop(self) -> None:
        """SIGTERM, as Kubernetes would; SIGKILL if it does not exit in time."""
        if self.started is not None:
            stop_pidfile(self._pidfile(), grace=20)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no final status writes; a crash. Returns once it is gone
        (the signal is sent, not awaited: a start() right after would find it running)."""
        if self.started is not None:
            stop_pidfile(self._pidfile(), grace=0)
            poll(lambda: not self.running(), "gone after SIGKILL", timeout=10)

    def log(self) -> str:
        return log_tail(self.started.log, 60) if self.started else "(never started)"

    def metric(self, name: str, /, **labels: str) -> float:
        """Sum of a Prometheus sample over series matching the labels (0 when absent)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            series, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

    def wait_metric(
        self, name: str, at_least: float, /, timeout: float = 60, **labels: str
    ) -> None:
        assert self.started is not None
        wait_until(
            self.started,
            lambda: self.metric(name, **labels) >= at_least,
            timeout,
            f"reporting {name}{labels} >= {at_least}",
        )


@contextmanager
def running_operator(
    state_dir: Path, env: dict[str, str], namespace: str, **overrides: str
) -> Iterator[Operator]:
    operator = Operator(state_dir, env, namespace)
    operator.start(**overrides)
    try:
        yield operator
    finally:
        operator.stop()


@contextmanager
def module_operator(
    api: client.ApiClient, env: dict[str, str], namespace: str, state_dir: Path, drop_data: bool
) -> Iterator[Operator]:
    """The operator of a test module's namespace. On the way out every campaign in it is
    deleted (with reclaimPolicy Delete first when drop_data: no schema or topic is left
    behind) and waited for, then the namespace goes."""
    with running_operator(state_dir, env, namespace) as op:
        yield op
        campaigns = list_campaigns(api, namespace)
        for obj in campaigns:
            name = obj["metadata"]["name"]
            if drop_data:
                patch_spec(api, namespace, name, {"reclaimPolicy": "Delete"})
            delete_campaign(api, namespace, name)
        for obj in campaigns:
            wait_campaign(api, namespace, obj["metadata"]["name"], lambda o: o is None, "deleted")
    delete_namespace(api, namespace)


# --- Kubernetes -------------------------------------------------------------------------


def new_namespace(api: client.ApiClient, prefix: str) -> str:
    """A fresh namespace, created before any operator starts watching it.

    (A namespaced Kopf operator discovers namespaces by watching them; creating the
    namespace first keeps each test independent of how quickly that happens.)
    """
    name = f"{prefix}-{secrets.token_hex(3)}"
    kubeapply.ensure_namespace(api, name)
    return name


def install_crd(api: client.ApiClient) -> None:
    kubeapply.install_crds(api, CRD_DIR)


@contextmanager
def crd_namespace(api: client.ApiClient, prefix: str) -> Iterator[str]:
    """A test module's namespace: the CRD installed, a fresh namespace named from prefix,
    deleted on the way out (the body of a module's `namespace` fixture)."""
    install_crd(api)
    name = new_namespace(api, prefix)
    yield name
    delete_namespace(api, name)


def example_documents(namespace: str) -> list[dict[str, Any]]:
    """The example's Secret and campaign, moved into the test's namespace."""
    docs = kubeapply.load_documents(EXAMPLE)
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


def campaign_documents(namespace: str, name: str, **spec_changes: Any) -> list[dict[str, Any]]:
    """A campaign shaped like the example, renamed; spec changes by dotted path."""
    docs = example_documents(namespace)
    secret = deepcopy(next(d for d in docs if d["kind"] == "Secret"))
    campaign = deepcopy(next(d for d in docs if d["kind"] == "LabelingCampaign"))
    secret["metadata"]["name"] = f"{name}-labelers"
    # The operator loads a tokens Secret only when it is labeled for the campaign.
    secret["metadata"].setdefault("labels", {})["labelops.dev/campaign"] = name
    campaign["metadata"]["name"] = name
    campaign["spec"]["labelers"]["tokenSecretRef"]["name"] = f"{name}-labelers"
    for dotted, value in spec_changes.items():
        node = campaign["spec"]
        *path, last = dotted.split(".")
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    return [secret, campaign]


def apply_campaigns(
    api: client.ApiClient, namespace: str, names: list[str], **spec_changes: Any
) -> None:
    """Every named campaign (with its Secret) applied at once, each with spec_changes."""
    docs = []
    for name in names:
        docs += campaign_documents(namespace, name, **spec_changes)
    apply(api, docs)


def apply(api: client.ApiClient, docs: list[dict[str, Any]]) -> None:
    kubeapply.apply(api, docs)


def get_campaign(api: client.ApiClient, namespace: str, name: str) -> Campaign | None:
    try:
        obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except client.ApiException as err:
        if err.status == 404:
            return None
        raise
    return cast(Campaign, obj)


def list_campaigns(api: client.ApiClient, namespace: str) -> list[Campaign]:
    found = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL
    )
    return list(cast(dict[str, Any], found)["items"])


def list_objects(
    api: client.ApiClient, api_version: str, kind: str, namespace: str, **selectors: str
) -> list[dict[str, Any]]:
    resource = dynamic.DynamicClient(api).resources.get(api_version=api_version, kind=kind)
    return list(resource.get(namespace=namespace, **selectors).to_dict()["items"])


def patch_spec(api: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> int:
    """Merge-patch the spec; returns the new generation."""
    obj = client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}
    )
    return int(cast(Campaign, obj)["metadata"]["generation"])


def delete_campaign(api: client.ApiClient, namespace: str, name: str) -> None:
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except client.ApiException as err:
        if err.status != 404:
            raise


def get_object(
    api: client.ApiClient, api_version: str, kind: str, namespace: str, name: str
) -> dict[str, Any] | None:
    resource = dynamic.DynamicClient(api).resources.get(api_version=api_version, kind=kind)
    try:
        return dict(resource.get(name=name, namespace=namespace).to_dict())
    except dynamic.exceptions.NotFoundError:
        return None


def secret_value(secret: dict[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def condition(obj: Campaign | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def describe(obj: Campaign | None) -> str:
    if obj is None:
        return "campaign does not exist"
    status = obj.get("status") or {}
    lines = [
        f"generation {obj['metadata'].get('generation')}, observedGeneration "
        f"{status.get('observedGeneration')}, phase {status.get('phase')}"
    ]
    for cond in status.get("conditions") or []:
        lines.append(
            f"  {cond['type']}={cond['status']} {cond['reason']}: {cond.get('message', '')}"
        )
    return "\n".join(lines)


def wait_campaign(
    api: client.ApiClient,
    namespace: str,
    name: str,
    predicate: Callable[[Campaign | None], bool],
    what: str,
    timeout: float = 90,
    operator: Operator | None = None,
) -> Campaign | None:
    """Watch the campaign until predicate(campaign or None) holds; fail with its status."""
    custom = client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    last = get_campaign(api, namespace, name)
    while True:
        if predicate(last):
            return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        version = (last or {}).get("metadata", {}).get("resourceVersion")
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            field_selector=f"metadata.name={name}",
            timeout_seconds=max(1, int(min(remaining, 30))),
            **({"resource_version": version} if version else {}),
        )
        try:
            for event in stream:
                last = None if event["type"] == "DELETED" else dict(event["object"])
                if predicate(last) or time.monotonic() >= deadline:
                    break
        except client.ApiException as err:
            if err.status != 410:  # watch window expired: re-read and watch again
                raise
        last = get_campaign(api, namespace, name)
    logs = f"\noperator log:\n{operator.log()}" if operator else ""
    pytest.fail(
        f"{namespace}/{name}: not {what} within {timeout:.0f}s\n{describe(last)}{logs}",
        pytrace=False,
    )


def poll(
    check: Callable[[], bool],
    what: str,
    timeout: float = 60,
    log: Callable[[], str] | None = None,
) -> None:
    """Poll a condition the API server cannot be watched for (the database, Kafka, a
    worker's or the operator's answer) until it holds; fail naming it, with log() if given."""
    try:
        poll_until(check, timeout, interval=0.25)
    except TimedOut:
        details = f"\n{log()}" if log else ""
        pytest.fail(f"not {what} within {timeout:.0f}s{details}", pytrace=False)


def is_ready(obj: Campaign | None) -> bool:
    """Ready=True for the current generation (what kstatus and `kubectl wait` require)."""
    if obj is None:
        return False
    status = obj.get("status") or {}
    return (
        condition(obj, "Ready").get("status") == "True"
        and status.get("observedGeneration") == obj["metadata"]["generation"]
    )


def wait_ready(
    api: client.ApiClient,
    namespace: str,
    name: str,
    timeout: float = 90,
    operator: Operator | None = None,
) -> Campaign:
    obj = wait_campaign(api, namespace, name, is_ready, "Ready", timeout, operator)
    assert obj is not None
    return obj


def delete_campaigns_and_stop(
    api: client.ApiClient, namespace: str, names: list[str], operator: Operator
) -> None:
    """A chaos test's clean-up: the operator started again if it was killed, every named
    campaign deleted and waited for (120 s each), then the operator stopped."""
    if not operator.running():
        operator.start()
    for name in names:
        delete_campaign(api, namespace, name)
    for name in names:
        wait_campaign(api, namespace, name, lambda o: o is None, "deleted", 120)
    operator.stop()


def wait_event(
    api: client.ApiClient,
    namespace: str,
    name: str,
    reason: str,
    contains: str = "",
    timeout: float = 60,
) -> dict[str, Any]:
    """Kopf posts Events in the background: watch for one with this reason (and text)."""
    events = dynamic.DynamicClient(api).resources.get(api_version="v1", kind="Event")
    selector = f"involvedObject.name={name}"
    deadline = time.monotonic() + timeout
    while True:
        listing = events.get(namespace=namespace, field_selector=selector).to_dict()
        for event in listing["items"]:
            if event.get("reason") == reason and contains in (event.get("message") or ""):
                return dict(event)
        if time.monotonic() >= deadline:
            break
        # Block until the next Event of this object appears, then look again.
        for _ in watch.Watch().stream(
            client.CoreV1Api(api).list_namespaced_event,
            namespace,
            field_selector=selector,
            resource_version=listing["metadata"]["resourceVersion"],
            timeout_seconds=max(1, int(min(deadline - time.monotonic(), 10))),
        ):
            break
    seen = sorted(f"{e.get('reason')}: {e.get('message')}" for e in listing["items"])
    pytest.fail(
        f"no Event {reason} ({contains!r}) for {namespace}/{name}; seen:\n" + "\n".join(seen),
        pytrace=False,
    )


# What a missing grant looks like in the operator's log: the API server's "... is forbidden:
# User ... cannot ...", Kopf's "Not enough permissions" and its event poster's "Code: 403".
DENIED_MARKERS = ("forbidden:", "Forbidden", "Not enough permissions", "Code: 403", ": 403 ")


def service_account_kubeconfig(
    kube_api: client.ApiClient, admin_kubeconfig: str, namespace: str, account: str, path: Path
) -> Path:
    """A kubeconfig for the API server of the admin one, authenticated as the account."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    token = (
        client.CoreV1Api(kube_api)
        .create_namespaced_service_account_token(account, namespace, request)
        .status
    )
    assert token is not None
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    server = dict(cluster["cluster"])
    if "certificate-authority" in server:  # relative paths are relative to the admin file
        ca = Path(admin_kubeconfig).parent / server["certificate-authority"]
        server["certificate-authority"] = str(ca.resolve())
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stack", "cluster": server}],
                "users": [{"name": account, "user": {"token": token.token}}],
                "contexts": [{"name": account, "context": {"cluster": "stack", "user": account}}],
                "current-context": account,
            }
        )
    )
    return path


def delete_namespace(api: client.ApiClient, namespace: str) -> None:
    try:
        client.CoreV1Api(api).delete_namespace(namespace)
    except client.ApiException as err:
        if err.status != 404:
            raise


def kstatus_of(obj: Campaign | None) -> str:
    """The health Flux and kstatus-based tools compute for the live object (real kstatus)."""
    import json
    import subprocess

    from gotools import stack_tool

    run = subprocess.run(
        [str(stack_tool("kstatus"))],
        input=json.dumps(obj),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return str(json.loads(run.stdout)["status"])


# --- Kafka and Postgres -----------------------------------------------------------------


def topic_state(bootstrap: str, topic: str) -> tuple[int, int, dict[str, str]] | None:
    """(partitions, replication factor, configs) of a topic, None when it does not exist."""
    admin = AdminClient(client_connection(bootstrap).client_config({"log_level": 0}))
    future = admin.describe_topics(TopicCollection([topic]), request_timeout=10)[topic]
    try:
        description = future.result(timeout=15)
    except Exception as err:
        if "UNKNOWN_TOPIC" in str(err):
            return None
        raise
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource], request_timeout=10)[resource].result(timeout=15)
    return (
        len(description.partitions),
        len(description.partitions[0].replicas),
        {key: entry.value for key, entry in configs.items()},
    )


def list_topics(bootstrap: str, prefix: str) -> list[str]:
    admin = AdminClient(client_connection(bootstrap).client_config({"log_level": 0}))
    return sorted(t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix))


def pg_query(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        return list(conn.execute(query, params).fetchall())


def role_and_schema(dsn: str, role: str) -> tuple[tuple[Any, ...] | None, str | None]:
    """(rolconnlimit, rolcanlogin) of the role and the owner of the same-named schema."""
    roles = pg_query(dsn, "SELECT rolconnlimit, rolcanlogin FROM pg_roles WHERE rolname = %s", role)
    owners = pg_query(
        dsn, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s", role
    )
    return (roles[0] if roles else None, owners[0][0] if owners else None)


def drop_campaign_data(
    kafka_bootstrap: str, postgres_dsn: str, schema: str, topics: list[str]
) -> None:
    """Remove what a Retain campaign left behind, so reruns start clean."""
    from psycopg import sql

    admin = AdminClient(client_connection(kafka_bootstrap).client_config({"log_level": 0}))
    existing = [t for t in topics if t in admin.list_topics(timeout=10).topics]
    if existing:  # the client refuses an empty list
        for future in admin.delete_topics(existing, operation_timeout=10).values():
            future.result(timeout=15)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (schema,)).fetchone():
            # DROP OWNED rewrites the database's catalog row that every campaign role's
            # grants share: two at once fail with "tuple concurrently updated". Taken in
            # turns under the operator's provisioning lock, as the operator drops roles
            # (tests clean up in parallel threads, and beside a running operator).
            lock = f"{OPERATOR_SCHEMA}.{LOCK_TABLE}"
            with conn.transaction():
                if conn.execute("SELECT to_regclass(%s)", (lock,)).fetchone() != (None,):
                    conn.execute(TAKE_PROVISIONING_LOCK)
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(schema)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(schema)))
