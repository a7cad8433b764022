"""Who may do what on a campaign's topics, decided from its names alone.

On a broker with authentication and ACLs (the operator's own connection is SASL/SCRAM), each
campaign gets two SCRAM users, and ACLs that allow exactly what each one's process does:

- its workers (`<topic prefix>.worker`): read the items and predictions topics as the
  campaign's consumer group, write the labels topic (the outbox relay; an idempotent
  producer needs nothing more since Kafka 2.8). Dead letters stay in PostgreSQL.
- its learner (`<topic prefix>.learner`): read the items and labels topics (with the group
  its reader names and never joins), write the predictions topic. An external learner of
  the campaign uses the same credentials.

Nothing else: no other campaign's topics, no topic creation, no cluster operations. The
credentials are the campaign's Secrets (`<name>-kafka`, `<name>-learner-kafka`), loaded into
the pods with envFrom; the users and ACLs go with the campaign under either reclaim policy
(Retain keeps data, not access).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from labelops.api.kafka_connection import KafkaConnection
from labelops.api.naming import CampaignNames

SCRAM_ITERATIONS = 8192  # Kafka's minimum is 4096; the default of its own tools is 4096


def principal(user: str) -> str:
    return f"User:{user}"


def _allow(user: str, kind: ResourceType, name: str, operation: AclOperation) -> AclBinding:
    return AclBinding(
        kind,
        name,
        ResourcePatternType.LITERAL,
        principal(user),
        "*",
        operation,
        AclPermissionType.ALLOW,
    )


@dataclass(frozen=True)
class CampaignUser:
    """One SCRAM user of a campaign: its name, the Secret holding its credentials, its ACLs."""

    name: str
    secret: str
    acls: frozenset[AclBinding]


def _user(name: str, secret: str, reads: tuple[str, ...], group: str, writes: str) -> CampaignUser:
    topic = ResourceType.TOPIC
    return CampaignUser(
        name,
        secret,
        frozenset(
            {
                *(_allow(name, topic, read, AclOperation.READ) for read in reads),
                _allow(name, ResourceType.GROUP, group, AclOperation.READ),
                _allow(name, topic, writes, AclOperation.WRITE),
            }
        ),
    )


def campaign_users(names: CampaignNames) -> tuple[CampaignUser, CampaignUser]:
    """The campaign's worker and learner users, each with exactly the ACLs it needs."""
    return (
        _user(
            names.worker_kafka_user,
            names.kafka_secret,
            reads=(names.items_topic, names.predictions_topic),
            group=names.consumer_group,
            writes=names.labels_topic,
        ),
        _user(
            names.learner_kafka_user,
            names.learner_kafka_secret,
            reads=(names.items_topic, names.labels_topic),
            group=names.learner_group,
            writes=names.predictions_topic,
        ),
    )


@dataclass(frozen=True)
class AclChanges:
    create: frozenset[AclBinding]
    delete: frozenset[AclBinding]

    @property
    def empty(self) -> bool:
        return not self.create and not self.delete


def diff_acls(desired: Iterable[AclBinding], observed: Iterable[AclBinding]) -> AclChanges:
    """What to create and delete so a user's ACLs are exactly the desired ones."""
    wanted, live = frozenset(desired), frozenset(observed)
    return AclChanges(create=wanted - live, delete=live - wanted)


def credentials_secret(ref_metadata: dict[str, Any], connection: KafkaConnection) -> dict[str, Any]:
    """The Secret envFrom loads into a campaign's pods: the LABELOPS_KAFKA_* security
    variables of their user. `data`, not `stringData`, so a second apply changes nothing."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": ref_metadata,
        "type": "Opaque",
        "data": {
            key: base64.b64encode(value.encode()).decode()
            for key, value in sorted(connection.security_env().items())
        },
    }
