"""LabelingCampaign (labelops.dev/v1alpha1): the single source of truth for the API.

The CRD in crds/ is generated from these models (`make crds`, see api/crd.py). Field
descriptions become the CRD's documentation, `x-kubernetes-validations` carry the CEL
rules the API server enforces at admission, defaults are applied by the API server.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GROUP = "labelops.dev"
VERSION = "v1alpha1"
KIND = "LabelingCampaign"
PLURAL = "labelingcampaigns"
SINGULAR = "labelingcampaign"
SHORT_NAMES = ["lcamp", "campaign"]

# Campaign names feed Deployment, Service, Secret names and label values (max 63 chars,
# "<name>-worker" the longest), so they are kept to a DNS label of at most 48 characters.
MAX_NAME_LENGTH = 48

# Shares and probabilities the spec names, by their bounds.
Share = Annotated[float, Field(gt=0.0, lt=1.0)]  # of items, of claims: 0 < x < 1
ShareOrNone = Annotated[float, Field(ge=0.0, lt=1.0)]  # the same, or none at all: 0 <= x < 1
BetterThanChance = Annotated[float, Field(gt=0.5, lt=1.0)]  # an accuracy, a posterior
# Tasks a labeler may hold at once: in a campaign (quotas) and across a pool's (capacity).
LeasesPerLabeler = Annotated[int, Field(ge=1, le=1000)]

QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
DURATION_PATTERN = r"^[0-9]+(ms|s|m|h|d)$"


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def string_set(description: str, *, most: int, longest: int = 253) -> Any:
    """A list field of distinct strings (a set to server-side apply), empty by default."""
    return Field(
        default_factory=list,
        max_length=most,
        description=description,
        json_schema_extra={
            "x-kubernetes-list-type": "set",
            "items": {"type": "string", "maxLength": longest},
        },
    )


def list_keyed_by(key: str) -> dict[str, Any]:
    """The schema of a list merged entry by entry on `key` (a map to server-side apply)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]}


class Model(BaseModel):
    """Frozen, camelCase on the wire, unknown fields refused (the CRD prunes them anyway)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )


class TaskType(StrEnum):
    PAIRWISE = "pairwise"
    RANKING = "ranking"
    RATING = "rating"
    CLASSIFICATION = "classification"
    FREE_TEXT = "free-text"


class Scale(Model):
    min: int = Field(description="Lowest score a labeler may give.")
    max: int = Field(description="Highest score a labeler may give.")


class Task(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.type != 'classification' || "
                    "(has(self.choices) && size(self.choices) >= 2)",
                    "task.choices must list at least 2 choices when task.type is classification",
                    ".choices",
                ),
                cel(
                    "self.type != 'rating' || has(self.scale)",
                    "task.scale {min, max} is required when task.type is rating",
                    ".scale",
                ),
                cel(
                    "!has(self.scale) || self.scale.min < self.scale.max",
                    "task.scale.min must be less than task.scale.max",
                    ".scale",
                ),
                cel(
                    "!has(self.minLength) || !has(self.maxLength) || "
                    "self.minLength <= self.maxLength",
                    "task.minLength must not exceed task.maxLength",
                    ".minLength",
                ),
                cel(
                    "self.type == oldSelf.type",
                    "task.type is immutable: labels already collected would no longer fit; "
                    "create a new campaign instead",
                    ".type",
                ),
            ]
        }
    )

    type: TaskType = Field(
        description="What labelers do: pairwise | ranking | rating | classification | free-text."
    )
    instructions: str = Field(
        min_length=1, max_length=20000, description="Shown to every labeler above the task."
    )
    choices: list[str] | None = Field(
        default=None,
        min_length=2,
        max_length=200,
        description="classification: the allowed choices (unique).",
        json_schema_extra={
            "x-kubernetes-list-type": "set",
            "items": {"type": "string", "maxLength": 200},
        },
    )
    multiple: bool = Field(
        default=False, description="classification: a label may pick several choices."
    )
    scale: Scale | None = Field(default=None, description="rating: the score range.")
    min_length: int | None = Field(
        default=None, ge=0, le=100000, description="free-text: shortest accepted answer."
    )
    max_length: int | None = Field(
        default=None, ge=1, le=100000, description="free-text: longest accepted answer."
    )
    label_schema: dict[str, Any] | None = Field(
        default=None,
        description="Optional JSON Schema (draft 2020-12) every label value must also satisfy.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"},
    )


class Target(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.labelsPerItem >= oldSelf.labelsPerItem",
                    "target.labelsPerItem may not decrease: items already holding more labels "
                    "would exceed it",
                    ".labelsPerItem",
                )
            ]
        }
    )

    items: int = Field(ge=1, le=100_000_000, description="Items that must be completed.")
    labels_per_item: int = Field(
        default=1, ge=1, le=100, description="Overlap: an item is done at exactly N labels."
    )


_QUANTITY_MAP: dict[str, Any] = {
    "additionalProperties": {"type": "string", "pattern": QUANTITY_PATTERN}
}


class ResourceRequirements(Model):
    # A structural schema needs the type next to the pattern, or the API server refuses it.
    requests: dict[str, str] | None = Field(default=None, json_schema_extra=_QUANTITY_MAP)
    limits: dict[str, str] | None = Field(default=None, json_schema_extra=_QUANTITY_MAP)


DEFAULT_WORKER_IMAGE = "labelops:0.1.0"


class AutoscalingMode(StrEnum):
    HPA = "hpa"
    KEDA = "keda"


class Autoscaling(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.minReplicas <= self.maxReplicas",
                    "workers.autoscaling.minReplicas must be at most maxReplicas",
                    ".minReplicas",
                ),
                cel(
                    "self.minReplicas >= 1 || self.mode == 'keda'",
                    "workers.autoscaling.minReplicas 0 needs mode keda (a "
                    "HorizontalPodAutoscaler cannot scale to zero without a feature gate)",
                    ".minReplicas",
                ),
            ]
        }
    )

    mode: AutoscalingMode = Field(
        default=AutoscalingMode.HPA,
        description="hpa: a HorizontalPodAutoscaler on CPU; keda: a KEDA ScaledObject on the "
        "items topic's consumer lag and the campaign's active leases (needs KEDA's CRDs in "
        "the cluster).",
    )
    min_replicas: int = Field(
        default=1, ge=0, le=100, description="Fewest worker pods while labeling (0: keda only)."
    )
    max_replicas: int = Field(ge=1, le=100, description="Most worker pods.")
    target_cpu_utilization: int = Field(
        default=70,
        alias="targetCPUUtilization",
        ge=1,
        le=100,
        description="hpa: average CPU use, in percent of the workers' CPU request.",
    )
    lag_threshold: int = Field(
        default=100,
        ge=1,
        le=1_000_000,
        description="keda: items waiting on the items topic per worker pod.",
    )
    leases_per_replica: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="keda: active leases (tasks labelers hold, campaign-wide, from the "
        "workers' /metrics) per worker pod.",
    )

    @model_validator(mode="after")
    def _replica_bounds(self) -> Autoscaling:
        # The CEL rules above, for specs validated outside the API server.
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"workers.autoscaling.minReplicas {self.min_replicas} must be at most "
                f"maxReplicas {self.max_replicas}"
            )
        if self.min_replicas == 0 and self.mode != AutoscalingMode.KEDA:
            raise ValueError(
                "workers.autoscaling.minReplicas 0 needs mode keda (a HorizontalPodAutoscaler "
                "cannot scale to zero without a feature gate)"
            )
        return self


class Workers(Model):
    replicas: int = Field(
        default=1,
        ge=0,
        le=100,
        description="Worker pods while running; ignored while autoscaling is set.",
    )
    autoscaling: Autoscaling | None = Field(
        default=None,
        description="Scale the workers with demand; the operator then leaves replicas to the "
        "autoscaler (still 0 once the target is met).",
    )
    image: str = Field(
        default=DEFAULT_WORKER_IMAGE,
        min_length=1,
        max_length=512,
        description="Worker image (runs `labelops worker`); its repository must be one the "
        "operator allows (chart value workerImageAllowlist).",
    )
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "100m", "memory": "128Mi"}, limits={"memory": "512Mi"}
        ),
        description="Container resources of each worker.",
    )


class KafkaSpec(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.replicationFactor == oldSelf.replicationFactor",
                    "kafka.replicationFactor is immutable: changing it needs a partition "
                    "reassignment, which labelops does not do",
                    ".replicationFactor",
                )
            ]
        }
    )

    partitions: int = Field(
        default=3, ge=1, le=1000, description="Partitions of each topic (may only grow)."
    )
    replication_factor: int = Field(default=1, ge=1, le=10, description="Replicas per partition.")
    retention: str = Field(
        default="7d",
        pattern=DURATION_PATTERN,
        max_length=20,
        description="How long topics keep messages, e.g. 12h, 7d.",
    )


class KubernetesQuota(Model):
    cpu: str | None = Field(default=None, pattern=QUANTITY_PATTERN, max_length=32)
    memory: str | None = Field(default=None, pattern=QUANTITY_PATTERN, max_length=32)
    pods: int | None = Field(default=None, ge=1, le=10000)


class PostgresQuota(Model):
    connection_limit: int = Field(
        default=20, ge=1, le=10000, description="CONNECTION LIMIT of the campaign's role."
    )


class Quotas(Model):
    per_labeler_daily: int = Field(
        default=500, ge=1, le=100000, description="Labels per labeler per UTC day."
    )
    max_leases_per_labeler: LeasesPerLabeler = Field(
        default=5, description="Tasks a labeler may hold at once."
    )
    lease_seconds: int = Field(
        default=600,
        ge=10,
        le=86400,
        description="A claimed task returns to the pool after this many seconds.",
    )
    kubernetes: KubernetesQuota | None = Field(
        default=None,
        description="ResourceQuota for the campaign's namespace (a namespace-wide object: "
        "put one campaign per namespace when you use it).",
    )
    postgres: PostgresQuota = Field(default_factory=PostgresQuota)


DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# The name of a Secret, a LabelerPool, most kinds of Kubernetes object.
ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]


class SecretRef(Model):
    name: ObjectName


class PoolRef(Model):
    name: ObjectName = Field(
        description="The LabelerPool (same namespace) whose labelers serve this campaign."
    )
    required_skills: list[str] = string_set(
        "Skills of the pool a labeler needs, all of them, to get this campaign's tasks.",
        most=100,
        longest=63,
    )
    weight: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="Share of the pool's labels within its priority tier: weight over the "
        "sum of the weights of the tier's campaigns with work.",
    )
    priority: int = Field(
        default=0,
        ge=-1000,
        le=1000,
        description="Tier: a labeler gets a higher tier's tasks before any lower one's.",
    )


_ONE_SOURCE_OF_LABELERS = (
    "labelers needs exactly one of labelers.tokenSecretRef (the campaign's own tokens Secret) "
    "or labelers.poolRef (a LabelerPool's labelers)"
)


class Labelers(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.tokenSecretRef) != has(self.poolRef)", _ONE_SOURCE_OF_LABELERS)
            ]
        }
    )

    token_secret_ref: SecretRef | None = Field(
        default=None,
        description="Secret whose data keys are labeler ids and values their bearer tokens; "
        "it must be labeled labelops.dev/campaign=<this campaign's name>.",
    )
    pool_ref: PoolRef | None = Field(
        default=None,
        description="Join a LabelerPool: its labelers, sign-in and skills serve this campaign.",
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Labelers:
        if (self.token_secret_ref is None) == (self.pool_ref is None):
            raise ValueError(_ONE_SOURCE_OF_LABELERS)
        return self

    blocked: list[str] = string_set(
        "Labeler ids blocked whatever their gold accuracy (GitOps can ban).", most=10000
    )
    unblocked: list[str] = string_set(
        "Labeler ids never blocked by the gold rule (GitOps can pardon).", most=10000
    )


class ModelOrder(StrEnum):
    PRIORITY = "priority"
    UNCERTAINTY = "uncertainty"


class AutoAccept(Model):
    target_accuracy: BetterThanChance = Field(
        default=0.95,
        description="Machine labels must be at least this accurate (0.5 < x < 1) ...",
    )
    confidence_level: float = Field(
        default=0.95,
        ge=0.5,
        lt=1.0,
        description="... with this confidence: a one-sided Clopper-Pearson lower bound.",
    )
    audit_rate: Share = Field(
        default=0.05,
        description="Share of scored items that still go to people, chosen at random from "
        "the item id and model version, forever (0 < x < 1): they measure the model.",
    )
    brake_window: int = Field(
        default=100,
        ge=10,
        le=100000,
        description="Audits of a version in the rolling window the brake tests: when their "
        "accuracy is below targetAccuracy with confidenceLevel, auto-accept stops.",
    )


class LearnerType(StrEnum):
    BUILTIN = "builtin"


class Learner(Model):
    type: LearnerType = Field(
        description="builtin: the operator runs `labelops learner` (TF-IDF + logistic "
        "regression, retrained on the campaign's human labels)."
    )
    retrain_labels: int = Field(
        default=250,
        ge=1,
        le=1000000,
        description="Retrain after this many new human labels. Each version is calibrated on "
        "its own audits (59 correct ones at least prove 95% at 95%), so with autoAccept a "
        "version must live long enough for people to audit it: audits are served first.",
    )
    retrain_seconds: int = Field(
        default=60, ge=5, le=86400, description="... or after this many seconds."
    )


class ModelSpec(Model):
    order: ModelOrder = Field(
        default=ModelOrder.UNCERTAINTY,
        description="uncertainty: priority first, then least confident first; priority: "
        "priority, then ingest order.",
    )
    auto_accept: AutoAccept | None = Field(
        default=None,
        description="Accept a calibrated model's confident predictions without people.",
    )
    show_prediction: bool = Field(
        default=False,
        description="Show the model's answer to labelers as a suggestion (off: no anchoring).",
    )
    learner: Learner | None = Field(default=None, description="A model the operator runs.")


class Gold(Model):
    rate: ShareOrNone = Field(
        default=0.1,
        description="Share of a labeler's claims that are gold items, mixed in at random.",
    )
    onboarding: int = Field(
        default=5, ge=0, le=1000, description="A new labeler's first claims are gold."
    )
    min_answers: int = Field(
        default=10, ge=1, le=100000, description="No verdict on a labeler before this many."
    )
    min_accuracy: Share = Field(
        default=0.8,
        description="Block a labeler when the Wilson upper bound (95%) of their gold "
        "accuracy falls below this.",
    )


class Overlap(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.min <= self.max",
                    "quality.overlap.min must not exceed quality.overlap.max",
                    ".min",
                )
            ]
        }
    )

    min: int = Field(default=2, ge=1, le=100, description="Labels an item takes at least.")
    max: int = Field(default=7, ge=1, le=100, description="Labels an item takes at most.")
    agreement: BetterThanChance = Field(
        default=0.95,
        description="Complete when the posterior of the leading answer (labelers weighed "
        "by their estimated accuracy) reaches this (0.5 < x < 1).",
    )


class QualitySpec(Model):
    gold: Gold | None = Field(default=None, description="Gold (honeypot) items.")
    overlap: Overlap | None = Field(
        default=None,
        description="Adaptive overlap (categorical types); without it labelsPerItem is exact.",
    )
    min_agreement: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="Alert when Krippendorff's alpha of the human labels stays below this.",
    )


class ReclaimPolicy(StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


# CEL: the task's answers are categories (consensus, audits and gold compare one of them).
CATEGORICAL_TASK = (
    "(self.task.type == 'pairwise' || self.task.type == 'rating' || "
    "(self.task.type == 'classification' && !self.task.multiple))"
)


class CampaignSpec(Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.quality) || !has(self.quality.overlap) || " + CATEGORICAL_TASK,
                    "quality.overlap needs a categorical task type (pairwise, rating, "
                    "classification with one choice)",
                    ".quality.overlap",
                ),
                cel(
                    "!has(self.model) || !has(self.model.autoAccept) || " + CATEGORICAL_TASK,
                    "model.autoAccept needs a categorical task type (pairwise, rating, "
                    "classification with one choice)",
                    ".model.autoAccept",
                ),
                cel(
                    "!has(self.model) || !has(self.model.learner) || " + CATEGORICAL_TASK,
                    "model.learner (builtin) serves pairwise, rating and classification with "
                    "one choice",
                    ".model.learner",
                ),
            ]
        }
    )

    task: Task
    target: Target
    deadline: dt.datetime | None = Field(
        default=None, description="RFC 3339 time by which the target should be met."
    )
    workers: Workers = Field(default_factory=Workers)
    kafka: KafkaSpec = Field(default_factory=KafkaSpec)
    quotas: Quotas = Field(default_factory=Quotas)
    labelers: Labelers
    reclaim_policy: ReclaimPolicy = Field(
        default=ReclaimPolicy.RETAIN,
        description="Retain keeps schema, role and topics on delete; Delete drops them.",
    )
    paused: bool = Field(
        default=False,
        description="Stop new claims (409); workers keep ingesting, relaying and accepting "
        "labels for tasks already leased.",
    )
    model: ModelSpec | None = Field(
        default=None, description="Models in the loop: routing, auto-accept, a learner."
    )
    quality: QualitySpec | None = Field(
        default=None, description="Gold items, labeler blocking, adaptive overlap."
    )


# --- status -------------------------------------------------------------------------


class Phase(StrEnum):
    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    RUNNING = "Running"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    FAILED = "Failed"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    """metav1.Condition."""

    type: str = Field(max_length=316)
    status: ConditionStatus
    reason: str = Field(max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: dt.datetime
    observed_generation: int | None = Field(default=None, ge=0)


class Progress(Model):
    items_total: int = 0
    items_completed: int = 0
    labels: int = 0
    labels_target: int = 0
    percent: float = 0.0
    labels_per_hour: float = 0.0
    eta: dt.datetime | None = None
    summary: str = Field(default="", description="labels/target, for the printer column.")


class Counters(Model):
    human_labeled: int = Field(default=0, description="Accepted labels from people.")
    machine_labeled: int = Field(default=0, description="Accepted labels from models.")
    rejected: int = Field(default=0, description="Label submissions refused as invalid.")
    dead_lettered: int = Field(
        default=0, description="Item messages refused at ingest (see the dead_letters table)."
    )


class ModelStatus(Model):
    version: str | None = Field(default=None, description="The latest model version seen.")
    threshold: float | None = Field(
        default=None, description="Proven auto-accept threshold of that version (none yet)."
    )
    audits: int = Field(default=0, description="Audited items of that version.")
    audit_accuracy: float | None = None
    audit_lower_bound: float | None = Field(
        default=None, description="One-sided Clopper-Pearson lower bound at the threshold."
    )
    auto_accepted: int = Field(default=0, description="Items labeled by models.")
    routed_to_people: int = Field(default=0, description="Scored items left to people.")
    trusted: bool = Field(default=False, description="Auto-accept is on for that version.")
    machine_share: str = Field(default="", description="Machine-labeled share, for a column.")
    message: str = ""


class QualityStatus(Model):
    alpha: float | None = Field(
        default=None, description="Krippendorff's alpha of the human labels."
    )
    alpha_level: str | None = Field(default=None, description="nominal or ordinal.")
    gold_answers: int = 0
    gold_accuracy: float | None = None
    gold_accuracy_low: float | None = Field(default=None, description="Wilson 95% lower.")
    gold_accuracy_high: float | None = Field(default=None, description="Wilson 95% upper.")
    labelers_blocked: int = 0
    disputed_items: int = 0
    consolidated_items: int = 0


class Topics(Model):
    items: str | None = None
    labels: str | None = None
    predictions: str | None = None


class CampaignStatus(Model):
    observed_generation: int | None = None
    phase: Phase | None = None
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra=list_keyed_by("type"),
    )
    progress: Progress | None = None
    counters: Counters | None = None
    model: ModelStatus | None = None
    quality: QualityStatus | None = None
    topics: Topics | None = None
    schema_: str | None = Field(default=None, alias="schema")
    database_secret: str | None = Field(
        default=None, description="Secret with the campaign's Postgres DSN."
    )
    last_progress_at: dt.datetime | None = Field(
        default=None, description="When progress was last read."
    )


CONDITION_TYPES = (
    "Ready",
    "Reconciling",
    "Stalled",
    "TopicsReady",
    "SchemaReady",
    "WorkersReady",
    "TargetMet",
)
# Only for campaigns with model.autoAccept: whether auto-accept is on for the latest version.
MODEL_TRUSTED = "ModelTrusted"
