"""What to change, given what should exist (plan.py) and what the clients observed.

Pure functions. A change Kafka or Postgres cannot make safely is returned as a refusal
with a message for the user; the caller then applies nothing of that component, so an
unsupported change is reported, never half-applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from labelops.api.backend_state import ObservedDatabase, RoleChanges, Topic
from labelops.operator.plan import DatabasePlan


@dataclass(frozen=True)
class TopicChanges:
    create: tuple[Topic, ...] = ()
    # topic -> new total partition count
    grow_partitions: Mapping[str, int] = field(default_factory=dict)
    # topic -> {config key: new value}
    set_configs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    refusals: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.create or self.grow_partitions or self.set_configs)


def diff_topics(desired: Sequence[Topic], observed: Mapping[str, Topic | None]) -> TopicChanges:
    create: list[Topic] = []
    grow: dict[str, int] = {}
    configs: dict[str, dict[str, str]] = {}
    refusals: list[str] = []
    for plan in desired:
        live = observed.get(plan.name)
        if live is None:
            create.append(plan)
            continue
        if plan.partitions < live.partitions:
            refusals.append(
                f"kafka.partitions: {plan.partitions} is fewer than the {live.partitions} "
                f"partitions topic {plan.name} already has; Kafka cannot remove partitions, "
                f"set kafka.partitions to {live.partitions} or more"
            )
        elif plan.partitions > live.partitions:
            grow[plan.name] = plan.partitions
        if plan.replication_factor != live.replication_factor:
            refusals.append(
                f"kafka.replicationFactor: {plan.replication_factor} differs from the "
                f"replication factor {live.replication_factor} of existing topic {plan.name}; "
                "labelops does not reassign partitions"
            )
        drift = {k: v for k, v in plan.configs.items() if live.configs.get(k) != v}
        if drift:
            configs[plan.name] = drift
    if refusals:
        return TopicChanges(refusals=tuple(refusals))
    return TopicChanges(tuple(create), grow, configs)


def diff_database(
    plan: DatabasePlan, observed: ObservedDatabase, password_is_new: bool
) -> RoleChanges:
    role = observed.role
    create_role = role is None
    alter_role = role is not None and (
        role.connection_limit != plan.connection_limit or not role.can_login
    )
    return RoleChanges(
        create_role=create_role,
        alter_role=alter_role,
        set_password=password_is_new and not create_role,
        create_schema=observed.schema_owner is None,
        set_schema_owner=observed.schema_owner not in (None, plan.role),
    )
