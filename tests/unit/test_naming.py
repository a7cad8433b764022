"""Names of everything a campaign owns: deterministic, valid, and never shared."""

import re

from labelops.api.campaign import MAX_NAME_LENGTH
from labelops.api.naming import PG_IDENTIFIER_MAX, CampaignNames

KAFKA_TOPIC = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_names_are_deterministic() -> None:
    assert CampaignNames("human-data", "q4") == CampaignNames("human-data", "q4")
    assert CampaignNames("human-data", "q4").schema == CampaignNames("human-data", "q4").schema


def test_topics_are_valid_kafka_names_even_for_the_longest_names() -> None:
    names = CampaignNames("n" * 63, "c" * MAX_NAME_LENGTH)
    for topic in (names.items_topic, names.labels_topic, names.consumer_group):
        assert KAFKA_TOPIC.match(topic), topic


def test_dashes_and_dots_cannot_make_two_campaigns_share_topics() -> None:
    # "a-b"/"c" and "a"/"b-c" would collide if separators were replaced by the same char.
    first, second = CampaignNames("a-b", "c"), CampaignNames("a", "b-c")
    assert first.items_topic != second.items_topic
    assert first.schema != second.schema


def test_schema_differs_when_readable_part_collides() -> None:
    # Both flatten to "a_b_c"; the hash of namespace/name keeps them apart.
    first, second = CampaignNames("a-b", "c"), CampaignNames("a", "b-c")
    readable = lambda n: n.schema.rsplit("_", 1)[0]  # noqa: E731
    assert readable(first) == readable(second)
    assert first.schema != second.schema


def test_schema_fits_postgres_identifier_limit() -> None:
    names = CampaignNames("n" * 63, "c" * MAX_NAME_LENGTH)
    assert len(names.schema) <= PG_IDENTIFIER_MAX
    assert re.match(r"^[a-z_][a-z0-9_]*$", names.schema)
    assert names.role == names.schema


def test_kubernetes_children_names_are_dns_labels() -> None:
    names = CampaignNames("ns", "c" * MAX_NAME_LENGTH)
    for child in (names.worker, names.config_map, names.database_secret, names.resource_quota):
        assert len(child) <= 63 and DNS_LABEL.match(child), child


def test_selector_labels_are_a_subset_of_labels() -> None:
    names = CampaignNames("ns", "q4")
    assert names.selector_labels().items() <= names.labels().items()
    assert names.labels()["labelops.dev/campaign"] == "q4"
