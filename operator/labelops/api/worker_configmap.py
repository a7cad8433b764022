"""What the operator tells a campaign's workers: the JSON in the worker ConfigMap.

The worker reads it from the environment variable LABELOPS_CAMPAIGN (set by the Deployment
through configMapKeyRef), so the pod template alone says how a worker runs.
"""

from __future__ import annotations

from pydantic import Field

from labelops.api.campaign import Model, ModelSpec, QualitySpec, Quotas, Target, Task

CONFIG_KEY = "campaign.json"
ENV_CAMPAIGN = "LABELOPS_CAMPAIGN"
ENV_POSTGRES_DSN = "LABELOPS_POSTGRES_DSN"
ENV_KAFKA_BOOTSTRAP = "LABELOPS_KAFKA_BOOTSTRAP"
# Fixed labeler tokens of a worker run by hand: LABELOPS_TOKEN_<labeler id>=<token>. The
# operator sets none (its workers read the tokens' digests from the campaign's database).
ENV_TOKEN_PREFIX = "LABELOPS_TOKEN_"
DSN_KEY = "dsn"
PASSWORD_KEY = "password"
USERNAME_KEY = "username"
WORKER_PORT = 8080


class WorkerTopics(Model):
    items: str
    labels: str
    # Absent in the config of an operator older than models in the loop.
    predictions: str | None = None


class WorkerConfig(Model):
    namespace: str
    name: str
    task: Task
    target: Target
    quotas: Quotas
    schema_: str = Field(alias="schema")
    topics: WorkerTopics
    consumer_group: str
    paused: bool = False
    # metadata.generation of the campaign the config was written from: every label carries
    # it. Left out of the pod template's config hash, so a change that touches nothing the
    # workers do (say, replicas) does not restart them.
    generation: int = 0
    model: ModelSpec | None = None
    quality: QualitySpec | None = None
    blocked: list[str] = Field(default_factory=list)
    unblocked: list[str] = Field(default_factory=list)
