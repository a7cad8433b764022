"""What the operator tells a campaign's workers: the JSON in the worker ConfigMap.

The worker reads it from the environment variable LABELOPS_CAMPAIGN (set by the Deployment
through configMapKeyRef), so the pod template alone says how a worker runs.
"""

from __future__ import annotations

from pydantic import Field

from labelops.api.campaign import Model, Quotas, Target, Task

CONFIG_KEY = "campaign.json"
ENV_CAMPAIGN = "LABELOPS_CAMPAIGN"
ENV_POSTGRES_DSN = "LABELOPS_POSTGRES_DSN"
ENV_KAFKA_BOOTSTRAP = "LABELOPS_KAFKA_BOOTSTRAP"
# Labeler tokens arrive through envFrom on the tokens Secret with this prefix:
# LABELOPS_TOKEN_<labeler id>=<token>.
ENV_TOKEN_PREFIX = "LABELOPS_TOKEN_"
DSN_KEY = "dsn"
PASSWORD_KEY = "password"
USERNAME_KEY = "username"
WORKER_PORT = 8080


class WorkerTopics(Model):
    items: str
    labels: str


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
