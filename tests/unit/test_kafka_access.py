"""The Kafka connection every client reads, and the ACL plan of a campaign's users."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import test_plan
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from labelops.api.environment import ConfigError
from labelops.api.kafka_connection import KafkaConnection, connection_from_env
from labelops.api.naming import CampaignNames
from labelops.operator import plan
from labelops.operator.kafka_access import campaign_users, credentials_secret, diff_acls
from labelops.operator.settings import OperatorSettings

SASL = {
    "LABELOPS_KAFKA_BOOTSTRAP": "kafka:9092",
    "LABELOPS_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "LABELOPS_KAFKA_SASL_USERNAME": "operator",
    "LABELOPS_KAFKA_SASL_PASSWORD": "s3cret",
    "LABELOPS_KAFKA_SSL_CA_LOCATION": "/etc/kafka/ca.crt",
}


def test_absent_security_variables_mean_plaintext_as_before() -> None:
    connection = connection_from_env({"LABELOPS_KAFKA_BOOTSTRAP": "kafka:9092"})
    assert connection.client_config({"acks": "all"}) == {
        "acks": "all",
        "bootstrap.servers": "kafka:9092",
    }
    assert connection.security_env() == {"LABELOPS_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
    assert not connection.uses_scram


def test_sasl_defaults_to_scram_sha_512_and_wins_over_a_clients_own_settings() -> None:
    connection = connection_from_env(SASL)
    assert connection.uses_scram
    assert connection.client_config({"sasl.username": "someone else", "linger.ms": 5}) == {
        "linger.ms": 5,
        "bootstrap.servers": "kafka:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "operator",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/kafka/ca.crt",
    }
    assert "s3cret" not in repr(connection)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"LABELOPS_KAFKA_SECURITY_PROTOCOL": "TLS"},
            "LABELOPS_KAFKA_SECURITY_PROTOCOL='TLS' is not allowed: choose from PLAINTEXT, SSL",
        ),
        (
            {"LABELOPS_KAFKA_SASL_MECHANISM": "GSSAPI"},
            "LABELOPS_KAFKA_SASL_MECHANISM='GSSAPI' is not allowed: choose from SCRAM-SHA-512",
        ),
        (
            {"LABELOPS_KAFKA_SASL_PASSWORD": ""},
            "LABELOPS_KAFKA_SASL_PASSWORD is not set: LABELOPS_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        (
            {"LABELOPS_KAFKA_SECURITY_PROTOCOL": "SSL"},
            "need LABELOPS_KAFKA_SECURITY_PROTOCOL SASL_PLAINTEXT or SASL_SSL (it is SSL)",
        ),
        ({"LABELOPS_KAFKA_BOOTSTRAP": ""}, "LABELOPS_KAFKA_BOOTSTRAP is not set"),
    ],
)
def test_a_wrong_setting_is_named_without_echoing_the_password(
    overrides: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        connection_from_env({**SASL, **overrides})
    assert expected in str(caught.value)
    assert "s3cret" not in str(caught.value)


def allow(user: str, kind: ResourceType, name: str, operation: AclOperation) -> AclBinding:
    return AclBinding(
        kind,
        name,
        ResourcePatternType.LITERAL,
        f"User:{user}",
        "*",
        operation,
        AclPermissionType.ALLOW,
    )


P = "labelops.human-data.sms"


@pytest.mark.parametrize(
    ("which", "user", "secret", "reads", "group", "writes"),
    [
        # The worker: ingest reads items and predictions as the campaign's group; the outbox
        # relay writes labels.
        (0, f"{P}.worker", "sms-kafka", ("items", "predictions"), f"{P}.worker", "labels"),
        # The learner: reads items and labels (its reader's group, never joined), writes
        # predictions.
        (
            1,
            f"{P}.learner",
            "sms-learner-kafka",
            ("items", "labels"),
            "labelops-learner.human-data.sms.unused",
            "predictions",
        ),
    ],
)
def test_each_user_may_do_exactly_what_its_process_does(
    which: int, user: str, secret: str, reads: tuple[str, ...], group: str, writes: str
) -> None:
    planned = campaign_users(CampaignNames("human-data", "sms"))[which]
    topic = ResourceType.TOPIC
    assert (planned.name, planned.secret) == (user, secret)
    assert planned.acls == {
        *(allow(user, topic, f"{P}.{kind}", AclOperation.READ) for kind in reads),
        allow(user, ResourceType.GROUP, group, AclOperation.READ),
        allow(user, topic, f"{P}.{writes}", AclOperation.WRITE),
    }


def test_no_acl_of_a_campaign_names_anything_of_another_or_a_prefix() -> None:
    names = CampaignNames("ns", "a")
    other = CampaignNames("ns", "ab")
    for user in campaign_users(names):
        for binding in user.acls:
            assert binding.resource_pattern_type == ResourcePatternType.LITERAL
            assert binding.permission_type == AclPermissionType.ALLOW
            assert binding.name not in {*other.topics().values(), other.consumer_group}
            assert binding.principal == f"User:{user.name}"


def test_reconciling_makes_the_acls_exactly_the_plan() -> None:
    worker, _ = campaign_users(CampaignNames("ns", "a"))
    stray = allow(worker.name, ResourceType.TOPIC, "labelops.ns.b.labels", AclOperation.READ)
    kept = sorted(worker.acls, key=str)[0]
    changes = diff_acls(worker.acls, {kept, stray})
    assert changes.create == worker.acls - {kept}
    assert changes.delete == {stray}
    assert diff_acls(worker.acls, worker.acls).empty


def test_the_credentials_secret_holds_the_variables_envfrom_loads() -> None:
    access = KafkaConnection("kafka:9093", "SASL_SSL", "SCRAM-SHA-512", ssl_ca_pem="PEM")
    secret = credentials_secret({"name": "sms-kafka"}, access.as_user("u", "p"))
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {
        "LABELOPS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LABELOPS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "LABELOPS_KAFKA_SASL_USERNAME": "u",
        "LABELOPS_KAFKA_SASL_PASSWORD": "p",
        "LABELOPS_KAFKA_SSL_CA_PEM": "PEM",
    }
    # What the pod reads back is the same connection, CA included.
    again = connection_from_env({**decoded, "LABELOPS_KAFKA_BOOTSTRAP": "kafka:9093"})
    assert again == access.as_user("u", "p")


def test_the_learners_acl_names_the_group_its_reader_really_uses() -> None:
    names = CampaignNames("ns", "a")
    # learner/kafka_io.TopicReader names its (never joined) group after the client id.
    assert names.learner_group == f"{names.learner_client}.unused"


def test_the_operator_hands_campaign_pods_its_protocol_and_ca_but_not_its_user(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = OperatorSettings.from_env(
        {
            **SASL,
            "LABELOPS_KAFKA_SSL_CA_LOCATION": str(ca),
            "LABELOPS_WORKER_KAFKA_BOOTSTRAP": "kafka.svc:9093",
            "LABELOPS_POSTGRES_DSN": "postgresql://postgres@pg/postgres",
        }
    )
    assert settings.campaign_kafka_access == KafkaConnection(
        "kafka.svc:9093", "SASL_SSL", "SCRAM-SHA-512", ssl_ca_pem="-----BEGIN CERTIFICATE-----\n"
    )
    plaintext = OperatorSettings.from_env(
        {"LABELOPS_KAFKA_BOOTSTRAP": "k:9092", "LABELOPS_POSTGRES_DSN": "postgresql://pg/x"}
    )
    assert plaintext.campaign_kafka_access is None


def test_worker_pods_load_the_campaigns_kafka_secret_only_on_a_broker_with_acls() -> None:
    ref = plan.CampaignRef("human-data", "sms", "uid-1", 1)
    spec = test_plan.example_spec()
    access = KafkaConnection("kafka.svc:9092", "SASL_PLAINTEXT", "SCRAM-SHA-512")

    def env_from(env: plan.WorkerEnvironment) -> list[Any]:
        deployment = plan.worker_deployment(ref, spec, env, 1, "hash")
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        return list(container.get("envFrom", []))

    assert env_from(test_plan.ENV) == []
    with_acls = dataclasses.replace(test_plan.ENV, kafka_access=access)
    assert env_from(with_acls) == [{"secretRef": {"name": "sms-kafka"}}]
