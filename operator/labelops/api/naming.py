"""Deterministic names of everything a campaign owns, derived from namespace and name.

Namespaces never contain dots, so `labelops.<namespace>.<name>` cannot collide between
campaigns. Postgres identifiers are capped at 63 bytes, so the schema/role name is a
readable prefix plus a hash of the full "namespace/name".
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

PG_IDENTIFIER_MAX = 63


def schema_name(namespace: str, name: str) -> str:
    """The campaign's Postgres schema (and role): a readable prefix plus a hash of the full
    "namespace/name", within the 63 bytes of an identifier."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:8]
    readable = re.sub(r"[^a-z0-9]+", "_", f"{namespace}_{name}".lower())
    room = PG_IDENTIFIER_MAX - len("lc__") - len(digest)
    return f"lc_{readable[:room]}_{digest}"


@dataclass(frozen=True)
class CampaignNames:
    """Every name a campaign owns, made once from its namespace and name (see __post_init__,
    the one table of them)."""

    namespace: str
    name: str
    key: str = field(init=False)
    # Kafka
    topic_prefix: str = field(init=False)
    items_topic: str = field(init=False)
    labels_topic: str = field(init=False)
    predictions_topic: str = field(init=False)
    consumer_group: str = field(init=False)
    worker_kafka_user: str = field(init=False)  # SCRAM user of the campaign's workers
    learner_kafka_user: str = field(init=False)  # and of its learner
    learner_client: str = field(init=False)  # the learner's client.id
    learner_group: str = field(init=False)  # the group its reader names, never joins
    # Postgres
    schema: str = field(init=False)  # and the role's name: see role
    # Kubernetes, in the campaign's namespace
    worker: str = field(init=False)
    config_map: str = field(init=False)
    database_secret: str = field(init=False)
    kafka_secret: str = field(init=False)  # the workers' Kafka credentials
    learner_kafka_secret: str = field(init=False)  # the learner's
    resource_quota: str = field(init=False)

    def __post_init__(self) -> None:
        topics = f"labelops.{self.namespace}.{self.name}"
        derived = {
            "key": f"{self.namespace}/{self.name}",
            "topic_prefix": topics,
            "items_topic": f"{topics}.items",
            "labels_topic": f"{topics}.labels",
            "predictions_topic": f"{topics}.predictions",
            "consumer_group": f"{topics}.worker",
            "worker_kafka_user": f"{topics}.worker",
            "learner_kafka_user": f"{topics}.learner",
            "learner_client": f"labelops-learner.{self.namespace}.{self.name}",
            # learner/kafka_io.TopicReader: the client id + ".unused"
            "learner_group": f"labelops-learner.{self.namespace}.{self.name}.unused",
            "schema": schema_name(self.namespace, self.name),
            "worker": f"{self.name}-worker",  # the Deployment and its Service
            "config_map": f"{self.name}-config",
            "database_secret": f"{self.name}-db",
            "kafka_secret": f"{self.name}-kafka",
            "learner_kafka_secret": f"{self.name}-learner-kafka",
            "resource_quota": f"{self.name}-quota",
        }
        for attribute, value in derived.items():
            object.__setattr__(self, attribute, value)  # frozen: set once, here

    @property
    def role(self) -> str:
        """The campaign's Postgres role, which owns its schema and bears the schema's name."""
        return self.schema

    def topics(self) -> dict[str, str]:
        """The three topics by kind, as status.topics and the worker's config name them."""
        return {
            "items": self.items_topic,
            "labels": self.labels_topic,
            "predictions": self.predictions_topic,
        }

    def selector_labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "labelops-worker",
            "app.kubernetes.io/instance": self.name,
        }

    def labels(self) -> dict[str, str]:
        return {
            **self.selector_labels(),
            "app.kubernetes.io/component": "worker",
            "app.kubernetes.io/managed-by": "labelops",
            "labelops.dev/campaign": self.name,
        }
