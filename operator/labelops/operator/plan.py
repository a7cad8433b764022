"""What should exist for a campaign: pure functions from the campaign to desired objects.

Nothing here performs I/O. The reconcile steps observe the world, ask these functions what
it should look like, and hand the difference (see diff.py) to the clients.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from labelops.api.backend_state import Topic
from labelops.api.campaign import (
    DEFAULT_WORKER_IMAGE,
    GROUP,
    KIND,
    VERSION,
    CampaignSpec,
)
from labelops.api.kafka_connection import KafkaConnection
from labelops.api.naming import CampaignNames
from labelops.api.worker_configmap import (
    CONFIG_KEY,
    DSN_KEY,
    ENV_CAMPAIGN,
    ENV_KAFKA_BOOTSTRAP,
    ENV_POSTGRES_DSN,
    PASSWORD_KEY,
    USERNAME_KEY,
    WORKER_PORT,
    WorkerConfig,
    WorkerTopics,
)
from labelops.operator import network_policy

CAMPAIGN_API_VERSION = f"{GROUP}/{VERSION}"
CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"
# Workers run as this unprivileged user; the image must not need root.
WORKER_UID = 10001
_DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


@dataclass(frozen=True)
class CampaignRef:
    """Which campaign we act for: enough to name its children and to own them."""

    namespace: str
    name: str
    uid: str
    generation: int

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> CampaignRef:
        meta = body["metadata"]
        return cls(meta["namespace"], meta["name"], meta["uid"], int(meta.get("generation", 1)))

    @property
    def names(self) -> CampaignNames:
        return CampaignNames(self.namespace, self.name)

    def owner_reference(self) -> dict[str, Any]:
        # controller=true makes the campaign the one object responsible for each child;
        # blockOwnerDeletion keeps foreground deletion of the campaign waiting for them.
        return {
            "apiVersion": CAMPAIGN_API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": self.names.labels(),
            "ownerReferences": [self.owner_reference()],
        }


# Where worker pods find the Postgres CA (the `ca.crt` key of the campaign's database Secret).
WORKER_CA_DIR = "/etc/labelops/postgres-ca"
CA_KEY = "ca.crt"


@dataclass(frozen=True)
class PostgresEndpoint:
    """Where workers reach Postgres (host, port, database, TLS); credentials are per campaign.

    sslmode goes into every DSN the operator writes; ca_pem (the CA's PEM text) into each
    campaign's database Secret, mounted in the worker pods, with sslrootcert pointing at it.
    """

    host: str
    port: int
    dbname: str
    sslmode: str | None = None
    ca_pem: str | None = None

    @classmethod
    def from_admin_dsn(
        cls,
        dsn: str,
        host_override: str | None = None,
        sslmode: str | None = None,
        ca_pem: str | None = None,
    ) -> PostgresEndpoint:
        params = conninfo_to_dict(dsn)
        sslmode = sslmode or (str(params["sslmode"]) if params.get("sslmode") else None)
        host = str(params.get("host") or "localhost")
        port = int(params.get("port") or 5432)
        dbname = str(params.get("dbname") or params.get("user") or "postgres")
        if host_override:
            # "host" or "host:port"; a bare host keeps the admin port.
            override_host, _, override_port = host_override.rpartition(":")
            if override_host and override_port.isdigit():
                host, port = override_host, int(override_port)
            else:
                host = host_override
        return cls(host, port, dbname, sslmode, ca_pem)


@dataclass(frozen=True)
class WorkerEnvironment:
    """Operator-wide inputs to every worker Deployment."""

    default_image: str
    kafka_bootstrap: str
    postgres: PostgresEndpoint
    # Repository patterns (fnmatch) of the images campaigns may run; empty: only the
    # repository of default_image.
    image_allowlist: tuple[str, ...] = ()
    # Peers of the campaigns' NetworkPolicies; None: the operator writes none.
    network_policy_peers: network_policy.NetworkPolicyPeers | None = None
    # How campaign pods authenticate to Kafka (protocol, mechanism, CA; each campaign's user
    # and password are its own, see kafka_access.py); None: the broker has no authentication.
    kafka_access: KafkaConnection | None = None


@dataclass(frozen=True)
class DatabasePlan:
    role: str
    schema: str
    connection_limit: int


def retention_ms(duration: str) -> int:
    """'7d' -> 604800000; the CRD pattern guarantees <digits><unit>."""
    for unit in sorted(_DURATION_MS, key=len, reverse=True):
        if duration.endswith(unit) and duration[: -len(unit)].isdigit():
            return int(duration[: -len(unit)]) * _DURATION_MS[unit]
    raise ValueError(f"kafka.retention {duration!r} is not <number><ms|s|m|h|d>")


def desired_topics(names: CampaignNames, spec: CampaignSpec) -> list[Topic]:
    configs = {
        "retention.ms": str(retention_ms(spec.kafka.retention)),
        "cleanup.policy": "delete",
    }
    return [
        Topic(topic, spec.kafka.partitions, spec.kafka.replication_factor, configs)
        for topic in (names.items_topic, names.labels_topic, names.predictions_topic)
    ]


def desired_database(names: CampaignNames, spec: CampaignSpec) -> DatabasePlan:
    return DatabasePlan(names.role, names.schema, spec.quotas.postgres.connection_limit)


def desired_replicas(spec: CampaignSpec, target_met: bool) -> int:
    """No workers once the target is met. A paused campaign keeps its workers: they refuse
    new claims (409, spec.paused) but keep ingesting items (which could otherwise expire
    from Kafka), relaying labels and accepting submissions of leases already held."""
    return 0 if target_met else spec.workers.replicas


def worker_image(spec: CampaignSpec, env: WorkerEnvironment) -> str:
    # The CRD defaults workers.image to DEFAULT_WORKER_IMAGE, so "left at the default" is
    # the only signal that the operator's configured image should be used instead.
    if spec.workers.image == DEFAULT_WORKER_IMAGE:
        return env.default_image
    return spec.workers.image


def worker_dsn(plan: DatabasePlan, password: str, endpoint: PostgresEndpoint) -> str:
    tls: dict[str, str] = {}
    if endpoint.sslmode:
        tls["sslmode"] = endpoint.sslmode
    if endpoint.ca_pem:
        tls["sslrootcert"] = f"{WORKER_CA_DIR}/{CA_KEY}"
    return make_conninfo(
        host=endpoint.host,
        port=str(endpoint.port),
        dbname=endpoint.dbname,
        user=plan.role,
        password=password,
        **tls,
    )


# --- guards against a confused deputy ------------------------------------------------------

# A tokens Secret is read for a campaign (its digests written into the campaign's database,
# token_sync.py) only when it carries this label with the campaign's name: whoever may create
# a campaign cannot make the operator use any other Secret of the namespace (another
# campaign's database credentials, say) as its labelers' tokens.
TOKEN_OPT_IN_LABEL = f"{GROUP}/campaign"


def image_repository(image: str) -> str:
    """'reg:5000/team/labelops:0.2@sha256:...' -> 'reg:5000/team/labelops'."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def allowed_images(env: WorkerEnvironment) -> tuple[str, ...]:
    own = image_repository(env.default_image)
    return (own, *(p for p in env.image_allowlist if p != own))


def image_problem(spec: CampaignSpec, env: WorkerEnvironment) -> str | None:
    """Why the campaign's worker (and learner) image may not run, or None."""
    image = worker_image(spec, env)
    repository = image_repository(image)
    allowed = allowed_images(env)
    if any(fnmatch.fnmatchcase(repository, pattern) for pattern in allowed):
        return None
    return (
        f"spec.workers.image {image!r} (repository {repository!r}) is not allowed: the "
        f"operator runs only images from {', '.join(repr(p) for p in allowed)} "
        "(LABELOPS_WORKER_IMAGE_ALLOWLIST, chart value workerImageAllowlist)"
    )


def tokens_secret_name(spec: CampaignSpec) -> str:
    """The campaign's own tokens Secret (a pool campaign's digests come from its pool).

    :raises ValueError: for a campaign in a LabelerPool, which has none.
    """
    if spec.labelers.token_secret_ref is None:
        raise ValueError("spec.labelers.poolRef: a campaign in a pool has no tokens Secret")
    return spec.labelers.token_secret_ref.name


def token_secret_problem(
    ref: CampaignRef, spec: CampaignSpec, secret: Mapping[str, Any]
) -> str | None:
    """Why the tokens Secret may not be loaded into this campaign's workers, or None."""
    name = tokens_secret_name(spec)
    labels = (secret.get("metadata") or {}).get("labels") or {}
    found = labels.get(TOKEN_OPT_IN_LABEL)
    if found == ref.name:
        return None
    has = "has no such label" if found is None else f"is labeled for {found!r}"
    return (
        f"spec.labelers.tokenSecretRef: Secret {ref.namespace}/{name} {has}; only a Secret "
        f"labeled {TOKEN_OPT_IN_LABEL}={ref.name} is loaded into this campaign's workers "
        f"(kubectl label secret {name} {TOKEN_OPT_IN_LABEL}={ref.name})"
    )


# --- PostgreSQL connections a campaign needs -----------------------------------------------

# Mirrors worker/config.py and worker/main.py (tests/unit/test_plan_hardening.py checks it
# against WorkerSettings): LABELOPS_WORKER_THREADS database threads shared by the HTTP
# processes (at least 2 each), each HTTP process's batch writers, and one connection each for
# ingest, the outbox relay and the quality job. The operator does not set threads or
# processes, so a pod runs the defaults, with one HTTP process per usable core up to 2.
WORKER_THREADS = 4
WORKER_MAX_PROCESSES = 2
WORKER_BACKGROUND_CONNECTIONS = 3
# The operator connects as the admin role (SET ROLE does not count against the campaign
# role's limit); one session is kept free for `labelops export` / `labelops labelers`, which
# use the campaign's own credentials.
RESERVED_CONNECTIONS = 1


@dataclass(frozen=True)
class ConnectionBudget:
    replicas: int
    processes: int
    pool_per_process: int
    batch_writers: int
    reserved: int = RESERVED_CONNECTIONS

    @property
    def per_replica(self) -> int:
        return (
            self.processes * (self.pool_per_process + self.batch_writers)
            + WORKER_BACKGROUND_CONNECTIONS
        )

    @property
    def required(self) -> int:
        return self.replicas * self.per_replica + self.reserved

    def arithmetic(self) -> str:
        return (
            f"{self.replicas} replicas x {self.per_replica} connections ({self.processes} HTTP "
            f"process{'' if self.processes == 1 else 'es'} x ({self.pool_per_process} pooled + "
            f"{self.batch_writers} batch "
            f"writers) + {WORKER_BACKGROUND_CONNECTIONS} for ingest, relay and quality) + "
            f"{self.reserved} for labelops export = {self.required}"
        )


def _budget(replicas: int, processes: int) -> ConnectionBudget:
    return ConnectionBudget(
        replicas=replicas,
        processes=processes,
        pool_per_process=max(2, math.ceil(WORKER_THREADS / processes)),
        batch_writers=max(1, 2 // processes),
    )


def _most_replicas(spec: CampaignSpec) -> tuple[str, int]:
    auto = spec.workers.autoscaling
    if auto is not None:
        return "spec.workers.autoscaling.maxReplicas", auto.max_replicas
    return "spec.workers.replicas", spec.workers.replicas


def connection_budget(spec: CampaignSpec) -> ConnectionBudget:
    """The most connections the most workers the spec allows can open at once."""
    most = _most_replicas(spec)[1]
    budgets = [_budget(most, p) for p in range(1, WORKER_MAX_PROCESSES + 1)]
    return max(budgets, key=lambda b: b.required)


def connection_limit_problem(spec: CampaignSpec) -> str | None:
    """Why quotas.postgres.connectionLimit cannot serve the workers, or None."""
    limit = spec.quotas.postgres.connection_limit
    budget = connection_budget(spec)
    if budget.required <= limit:
        return None
    fits = max(0, (limit - budget.reserved) // budget.per_replica)
    field, most = _most_replicas(spec)
    return (
        f"spec.quotas.postgres.connectionLimit {limit} is too small for {field} "
        f"{most}: {budget.arithmetic()} > {limit}; set connectionLimit to at "
        f"least {budget.required}, or {field} to at most {fits}"
    )


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def database_secret(
    ref: CampaignRef, plan: DatabasePlan, password: str, dsn: str, ca_pem: str | None = None
) -> dict[str, Any]:
    # `data` rather than `stringData`: the API server never returns stringData, so applying it
    # would look like a change on every pass.
    data = {
        USERNAME_KEY: _b64(plan.role),
        PASSWORD_KEY: _b64(password),
        DSN_KEY: _b64(dsn),
    }
    if ca_pem:
        data[CA_KEY] = _b64(ca_pem)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": ref.metadata(ref.names.database_secret),
        "type": "Opaque",
        "data": data,
    }


def worker_config(ref: CampaignRef, spec: CampaignSpec) -> WorkerConfig:
    names = ref.names
    return WorkerConfig(
        # Whom the worker serves, and the names of what it uses
        namespace=ref.namespace,
        name=ref.name,
        generation=ref.generation,
        schema=names.schema,
        topics=WorkerTopics(**names.topics()),
        consumer_group=names.consumer_group,
        # What of the spec it acts on
        task=spec.task,
        target=spec.target,
        quotas=spec.quotas,
        paused=spec.paused,
        model=spec.model,
        quality=spec.quality,
        blocked=spec.labelers.blocked,
        unblocked=spec.labelers.unblocked,
    )


def worker_config_json(ref: CampaignRef, spec: CampaignSpec, with_generation: bool = True) -> str:
    """The ConfigMap's JSON; without the generation for the pod template's hash."""
    config = worker_config(ref, spec).model_dump(mode="json", by_alias=True)
    if not with_generation:
        del config["generation"]
    return json.dumps(config, sort_keys=True, indent=2)


def config_map(ref: CampaignRef, spec: CampaignSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": ref.metadata(ref.names.config_map),
        "data": {CONFIG_KEY: worker_config_json(ref, spec)},
    }


def config_hash(*parts: str) -> str:
    """Stamped on the pod template so workers restart when their config or credentials change."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _http_container_parts(port: int, ready_period: int, live_period: int) -> dict[str, Any]:
    """What the worker and learner containers share: an http port with /readyz and /healthz
    probes on it, no privileges, a read-only root filesystem with the pod's "tmp" volume
    writable on /tmp."""
    return {
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": ready_period,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "initialDelaySeconds": 10,
            "periodSeconds": live_period,
            "failureThreshold": 3,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def _restricted_pod_spec(
    container: dict[str, Any], volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    """A pod of one container, unprivileged (WORKER_UID), without a service account token:
    neither workers nor the learner talk to the Kubernetes API."""
    return {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }


def worker_deployment(
    ref: CampaignRef,
    spec: CampaignSpec,
    env: WorkerEnvironment,
    replicas: int | None,
    pod_config_hash: str,
    extra_env: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """replicas None: left out, for the autoscaler that owns it (see autoscaling.py).
    extra_env: a pool campaign's (pool_plan.member_worker_env)."""
    names = ref.names
    resources = spec.workers.resources.model_dump(exclude_none=True)
    container: dict[str, Any] = {
        "name": "worker",
        "image": worker_image(spec, env),
        "command": ["labelops", "worker"],
        "env": [
            {
                "name": ENV_CAMPAIGN,
                "valueFrom": {"configMapKeyRef": {"name": names.config_map, "key": CONFIG_KEY}},
            },
            {
                "name": ENV_POSTGRES_DSN,
                "valueFrom": {"secretKeyRef": {"name": names.database_secret, "key": DSN_KEY}},
            },
            {"name": ENV_KAFKA_BOOTSTRAP, "value": env.kafka_bootstrap},
            *(dict(variable) for variable in extra_env),
        ],
        # The campaign's own Kafka user (LABELOPS_KAFKA_* variables), on a broker with ACLs.
        **({"envFrom": [{"secretRef": {"name": names.kafka_secret}}]} if env.kafka_access else {}),
        **_http_container_parts(WORKER_PORT, ready_period=5, live_period=10),
        "resources": resources,
    }
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if env.postgres.ca_pem:
        # The DSN's sslrootcert points here (worker_dsn).
        container["volumeMounts"].append(
            {"name": "postgres-ca", "mountPath": WORKER_CA_DIR, "readOnly": True}
        )
        volumes.append(
            {
                "name": "postgres-ca",
                "secret": {
                    "secretName": names.database_secret,
                    "items": [{"key": CA_KEY, "path": CA_KEY}],
                },
            }
        )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": ref.metadata(names.worker),
        "spec": {
            **({"replicas": replicas} if replicas is not None else {}),
            "selector": {"matchLabels": names.selector_labels()},
            "template": {
                "metadata": {
                    "labels": names.labels(),
                    "annotations": {CONFIG_HASH_ANNOTATION: pod_config_hash},
                },
                "spec": _restricted_pod_spec(container, volumes),
            },
        },
    }


def worker_service(ref: CampaignRef) -> dict[str, Any]:
    names = ref.names
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": ref.metadata(names.worker),
        "spec": {
            "type": "ClusterIP",
            "selector": names.selector_labels(),
            "ports": [{"name": "http", "port": WORKER_PORT, "targetPort": "http"}],
        },
    }


def resource_quota(ref: CampaignRef, spec: CampaignSpec) -> dict[str, Any] | None:
    """The namespace's ResourceQuota, or None when the campaign sets no Kubernetes quota.

    A ResourceQuota limits the whole namespace, not just this campaign's pods; the API docs
    of quotas.kubernetes say so. Requests (not limits) are capped, because workers always
    declare requests while a cpu limit is optional.
    """
    quota = spec.quotas.kubernetes
    if quota is None:
        return None
    hard = {
        key: value
        for key, value in (
            ("requests.cpu", quota.cpu),
            ("requests.memory", quota.memory),
            ("pods", str(quota.pods) if quota.pods is not None else None),
        )
        if value is not None
    }
    if not hard:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": ref.metadata(ref.names.resource_quota),
        "spec": {"hard": hard},
    }


# --- the built-in learner ---------------------------------------------------------------

LEARNER_PORT = 8080
# Enough for TF-IDF + logistic regression over a campaign's texts; spec.workers.resources
# sizes the workers, not the learner.
LEARNER_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}


def learner_name(ref: CampaignRef) -> str:
    return f"{ref.name}-learner"


def learner_selector_labels(ref: CampaignRef) -> dict[str, str]:
    # Not the worker's: the worker Service must never send labelers to a learner pod.
    return {"app.kubernetes.io/name": "labelops-learner", "app.kubernetes.io/instance": ref.name}


def learner_labels(ref: CampaignRef) -> dict[str, str]:
    return {
        **learner_selector_labels(ref),
        "app.kubernetes.io/component": "learner",
        "app.kubernetes.io/managed-by": "labelops",
        f"{GROUP}/campaign": ref.name,
    }


def desired_learner_replicas(spec: CampaignSpec, target_met: bool) -> int:
    """One learner while the campaign labels; none when it is paused or complete."""
    return 0 if spec.paused or target_met else 1


def learner_task_json(spec: CampaignSpec) -> str:
    """spec.task for the learner: what it learns, without the labelers' instructions."""
    task = spec.task.model_dump(mode="json", by_alias=True, exclude_none=True)
    task.pop("instructions", None)
    return json.dumps(task, sort_keys=True)


def learner_deployment(
    ref: CampaignRef, spec: CampaignSpec, env: WorkerEnvironment, replicas: int
) -> dict[str, Any] | None:
    """The `<campaign>-learner` Deployment, or None when spec.model.learner is not builtin.

    Least privilege: the learner talks to Kafka only. It gets no database credentials, no
    labeler tokens and no service account token; its Kafka credentials, when the broker
    needs any, come from its own Secret (names.learner_kafka_secret, see kafka_access.py:
    read the items and labels topics, write the predictions topic; nothing else).
    """
    learner = spec.model.learner if spec.model is not None else None
    if learner is None:
        return None
    names = ref.names
    variables = {
        "LABELOPS_LEARNER_CAMPAIGN": names.key,
        "LABELOPS_LEARNER_TASK": learner_task_json(spec),
        "LABELOPS_KAFKA_BOOTSTRAP": env.kafka_bootstrap,
        "LABELOPS_LEARNER_ITEMS_TOPIC": names.items_topic,
        "LABELOPS_LEARNER_LABELS_TOPIC": names.labels_topic,
        "LABELOPS_LEARNER_PREDICTIONS_TOPIC": names.predictions_topic,
        "LABELOPS_LEARNER_RETRAIN_LABELS": str(learner.retrain_labels),
        "LABELOPS_LEARNER_RETRAIN_SECONDS": str(learner.retrain_seconds),
        "LABELOPS_LEARNER_PORT": str(LEARNER_PORT),
    }
    container = {
        "name": "learner",
        "image": worker_image(spec, env),
        "command": ["labelops", "learner"],
        "env": [{"name": key, "value": value} for key, value in variables.items()],
        "envFrom": [{"secretRef": {"name": names.learner_kafka_secret, "optional": True}}],
        **_http_container_parts(LEARNER_PORT, ready_period=10, live_period=20),
        "resources": LEARNER_RESOURCES,
    }
    labels = learner_labels(ref)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": learner_name(ref),
            "namespace": ref.namespace,
            "labels": labels,
            "ownerReferences": [ref.owner_reference()],
        },
        "spec": {
            "replicas": replicas,
            # One learner publishes a campaign's model versions: a rolling update would run
            # two that race each other's versions.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": learner_selector_labels(ref)},
            "template": {
                "metadata": {"labels": labels},
                "spec": _restricted_pod_spec(container, [{"name": "tmp", "emptyDir": {}}]),
            },
        },
    }


# --- network isolation ------------------------------------------------------------------


def network_policies(
    ref: CampaignRef, env: WorkerEnvironment, pool: str | None = None
) -> list[dict[str, Any]]:
    """The worker's and the learner's NetworkPolicies (see network_policy.py), or none when
    the operator is configured without; pool: the LabelerPool the campaign joins, whose
    router may call the workers. The learner's is written whether or not the spec
    has a learner: it selects no pod then, and nothing needs deleting when one comes or goes.
    """
    peers = env.network_policy_peers
    if peers is None:
        return []
    kafka = network_policy.kafka_ports(env.kafka_bootstrap)
    workers = network_policy.Pods(
        ref.metadata(ref.names.worker), ref.names.selector_labels(), WORKER_PORT
    )
    learner = network_policy.Pods(
        {**ref.metadata(learner_name(ref)), "labels": learner_labels(ref)},
        learner_selector_labels(ref),
        LEARNER_PORT,
    )
    return [
        network_policy.worker_policy(workers, peers, kafka, env.postgres.port, pool),
        network_policy.learner_policy(learner, peers, kafka),
    ]
