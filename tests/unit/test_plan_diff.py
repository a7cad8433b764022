"""What to change given what was observed: topics and the Postgres role/schema (pure)."""

from __future__ import annotations

from labelops.api.backend_state import ObservedDatabase, ObservedRole, RoleChanges, Topic
from labelops.operator.diff import diff_database, diff_topics
from labelops.operator.plan import DatabasePlan

CONFIGS = {"retention.ms": "604800000", "cleanup.policy": "delete"}
ITEMS = Topic("c.items", 6, 1, CONFIGS)
LABELS = Topic("c.labels", 6, 1, CONFIGS)


def live(
    spec: Topic, partitions: int | None = None, configs: dict[str, str] | None = None
) -> Topic:
    # Brokers report every config, not only the ones labelops sets.
    merged = {"segment.bytes": "1073741824", **CONFIGS, **(configs or {})}
    return Topic(spec.name, partitions or spec.partitions, spec.replication_factor, merged)


def test_missing_topics_are_created() -> None:
    changes = diff_topics([ITEMS, LABELS], {"c.items": None, "c.labels": live(LABELS)})
    assert changes.create == (ITEMS,)
    assert not changes.grow_partitions and not changes.set_configs and not changes.refusals


def test_matching_topics_need_nothing_and_unmanaged_configs_are_ignored() -> None:
    changes = diff_topics([ITEMS, LABELS], {"c.items": live(ITEMS), "c.labels": live(LABELS)})
    assert changes.empty and not changes.refusals


def test_partition_increase_grows_both_topics() -> None:
    observed = {"c.items": live(ITEMS, 3), "c.labels": live(LABELS, 3)}
    changes = diff_topics([ITEMS, LABELS], observed)
    assert changes.grow_partitions == {"c.items": 6, "c.labels": 6}


def test_partition_decrease_is_refused_and_nothing_else_is_applied() -> None:
    observed = {
        "c.items": live(ITEMS, 12),
        "c.labels": live(LABELS, 12, {"retention.ms": "1"}),
    }
    changes = diff_topics([ITEMS, LABELS], observed)
    assert changes.empty, "an unsupported change must not be half-applied"
    assert len(changes.refusals) == 2
    assert "kafka.partitions: 6 is fewer than the 12 partitions" in changes.refusals[0]
    assert "c.items" in changes.refusals[0]
    assert "set kafka.partitions to 12 or more" in changes.refusals[0]


def test_replication_factor_mismatch_is_refused() -> None:
    observed = {
        "c.items": Topic("c.items", 6, 3, CONFIGS),
        "c.labels": live(LABELS),
    }
    changes = diff_topics([ITEMS, LABELS], observed)
    assert changes.empty
    assert changes.refusals == (
        "kafka.replicationFactor: 1 differs from the replication factor 3 of existing topic "
        "c.items; labelops does not reassign partitions",
    )


def test_only_drifted_configs_are_set() -> None:
    observed = {
        "c.items": live(ITEMS, configs={"retention.ms": "1000"}),
        "c.labels": live(LABELS, configs={"cleanup.policy": "compact"}),
    }
    changes = diff_topics([ITEMS, LABELS], observed)
    assert changes.set_configs == {
        "c.items": {"retention.ms": "604800000"},
        "c.labels": {"cleanup.policy": "delete"},
    }
    assert not changes.create and not changes.grow_partitions


PLAN = DatabasePlan("lc_role", "lc_role", 20)
CURRENT = ObservedDatabase(ObservedRole(20, True), "lc_role")


def test_new_campaign_creates_role_and_schema() -> None:
    changes = diff_database(PLAN, ObservedDatabase(None, None), password_is_new=True)
    assert changes == RoleChanges(create_role=True, create_schema=True)


def test_second_pass_changes_nothing() -> None:
    assert diff_database(PLAN, CURRENT, password_is_new=False) == RoleChanges()


def test_connection_limit_change_or_lost_login_alters_the_role() -> None:
    assert diff_database(
        PLAN, ObservedDatabase(ObservedRole(5, True), "lc_role"), False
    ) == RoleChanges(alter_role=True)
    assert diff_database(
        PLAN, ObservedDatabase(ObservedRole(20, False), "lc_role"), False
    ) == RoleChanges(alter_role=True)


def test_a_new_secret_for_an_existing_role_resets_its_password() -> None:
    # E.g. a campaign re-created after Retain: the old role stays, the Secret is new.
    assert diff_database(PLAN, CURRENT, password_is_new=True) == RoleChanges(set_password=True)


def test_schema_owned_by_someone_else_is_handed_to_the_campaign_role() -> None:
    observed = ObservedDatabase(ObservedRole(20, True), "postgres")
    assert diff_database(PLAN, observed, False) == RoleChanges(set_schema_owner=True)


def test_schema_missing_under_an_existing_role_is_created() -> None:
    observed = ObservedDatabase(ObservedRole(20, True), None)
    assert diff_database(PLAN, observed, False) == RoleChanges(create_schema=True)
