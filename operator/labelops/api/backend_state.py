"""What a campaign's Kafka topics and Postgres role and schema should be, what was observed of
them, and what to change: plain frozen values.

The planner (operator/plan.py, operator/diff.py) decides with them and the clients
(clients/kafka.py, clients/postgres.py) observe and apply them, so they live below both:
pure decision code never imports the I/O code it steers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    """A topic: as it should exist (what plan.py decides, what KafkaAdmin.create() makes) or
    as the broker describes it (KafkaAdmin.describe())."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


@dataclass(frozen=True)
class ObservedRole:
    """The campaign's role as pg_roles describes it."""

    connection_limit: int
    can_login: bool


@dataclass(frozen=True)
class ObservedDatabase:
    """A campaign's role (None: missing) and the owner of its schema (None: no schema)."""

    role: ObservedRole | None
    schema_owner: str | None


@dataclass(frozen=True)
class RoleChanges:
    """What to do to the role and schema; computed by the operator's diff, applied by
    PostgresAdmin."""

    create_role: bool = False
    alter_role: bool = False
    set_password: bool = False
    create_schema: bool = False
    set_schema_owner: bool = False
