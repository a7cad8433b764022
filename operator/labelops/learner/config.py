"""The learner's settings, read from the environment the operator's learner Deployment sets.

Kafka is reached like every client reaches it (api/kafka_connection.py: LABELOPS_KAFKA_BOOTSTRAP
and the optional LABELOPS_KAFKA_* security variables, which the operator writes into the
learner's own Secret). The campaign is named by `namespace/name`; its task
(the campaign's spec.task as JSON) says what to learn; topics default to the campaign's names.
Every error names the variable, the value and what is allowed, and never echoes a secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from labelops.api.campaign import Task
from labelops.api.environment import ConfigError, validation_reasons
from labelops.api.environment import integer as _integer
from labelops.api.environment import required as _required
from labelops.api.kafka_connection import KafkaConnection, connection_from_env
from labelops.api.naming import CampaignNames

ENV_CAMPAIGN = "LABELOPS_LEARNER_CAMPAIGN"
ENV_TASK = "LABELOPS_LEARNER_TASK"
ENV_ITEMS_TOPIC = "LABELOPS_LEARNER_ITEMS_TOPIC"
ENV_LABELS_TOPIC = "LABELOPS_LEARNER_LABELS_TOPIC"
ENV_PREDICTIONS_TOPIC = "LABELOPS_LEARNER_PREDICTIONS_TOPIC"
ENV_RETRAIN_LABELS = "LABELOPS_LEARNER_RETRAIN_LABELS"
ENV_RETRAIN_SECONDS = "LABELOPS_LEARNER_RETRAIN_SECONDS"
ENV_MIN_LABELS = "LABELOPS_LEARNER_MIN_LABELS"
ENV_PORT = "LABELOPS_LEARNER_PORT"
ENV_HOST = "LABELOPS_LEARNER_HOST"

DEFAULT_RETRAIN_LABELS = 50
DEFAULT_RETRAIN_SECONDS = 60
# Fewer consolidated items than this and the learner keeps waiting: a model fitted on a
# handful of labels only adds noise to the routing.
DEFAULT_MIN_LABELS = 10
DEFAULT_PORT = 8080
DEFAULT_HOST = "0.0.0.0"  # a pod serves its probes and metrics on every interface


@dataclass(frozen=True)
class LearnerSettings:
    namespace: str
    name: str
    task: Task
    kafka: KafkaConnection
    items_topic: str
    labels_topic: str
    predictions_topic: str
    retrain_labels: int = DEFAULT_RETRAIN_LABELS
    retrain_seconds: float = DEFAULT_RETRAIN_SECONDS
    min_labels: int = DEFAULT_MIN_LABELS
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT

    @property
    def campaign(self) -> str:
        return f"{self.namespace}/{self.name}"

    def kafka_config(self) -> dict[str, Any]:
        """librdkafka settings every client of the learner starts from."""
        return self.kafka.client_config()


def settings_from_env(environ: Mapping[str, str]) -> LearnerSettings:
    namespace, name = _campaign(environ)
    names = CampaignNames(namespace, name)
    return LearnerSettings(
        namespace=namespace,
        name=name,
        task=_task(environ),
        kafka=connection_from_env(environ),
        items_topic=_text(environ, ENV_ITEMS_TOPIC, names.items_topic),
        labels_topic=_text(environ, ENV_LABELS_TOPIC, names.labels_topic),
        predictions_topic=_text(
            environ, ENV_PREDICTIONS_TOPIC, f"{names.topic_prefix}.predictions"
        ),
        retrain_labels=_integer(environ, ENV_RETRAIN_LABELS, DEFAULT_RETRAIN_LABELS, 1, 10**9),
        retrain_seconds=_integer(
            environ, ENV_RETRAIN_SECONDS, DEFAULT_RETRAIN_SECONDS, 1, 7 * 24 * 3600
        ),
        min_labels=_integer(environ, ENV_MIN_LABELS, DEFAULT_MIN_LABELS, 2, 10**9),
        host=_text(environ, ENV_HOST, DEFAULT_HOST),
        port=_integer(environ, ENV_PORT, DEFAULT_PORT, 0, 65535),
    )


def _campaign(environ: Mapping[str, str]) -> tuple[str, str]:
    raw = _required(environ, ENV_CAMPAIGN, "the campaign as <namespace>/<name>")
    namespace, slash, name = raw.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise ConfigError(f"{ENV_CAMPAIGN}={raw!r} is not <namespace>/<name>")
    return namespace, name


def _task(environ: Mapping[str, str]) -> Task:
    raw = _required(environ, ENV_TASK, "the campaign's spec.task as JSON")
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{ENV_TASK} is not JSON: {err}") from None
    if isinstance(document, dict):
        # The learner needs what the model learns, not what labelers read.
        document.setdefault("instructions", "(not needed by the learner)")
    try:
        return Task.model_validate(document)
    except ValidationError as err:
        raise ConfigError(f"{ENV_TASK} is not a valid task: {validation_reasons(err)}") from None


def _text(environ: Mapping[str, str], variable: str, default: str) -> str:
    return environ.get(variable, "").strip() or default
