"""The learner's environment: defaults from the campaign's names, errors that name the variable."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labelops.learner.config import ConfigError, settings_from_env

TASK = {"type": "classification", "instructions": "Spam?", "choices": ["ham", "spam"]}


def environ(**overrides: Any) -> dict[str, str]:
    env = {
        "LABELOPS_KAFKA_BOOTSTRAP": "kafka:9092",
        "LABELOPS_LEARNER_CAMPAIGN": "human-data/sms",
        "LABELOPS_LEARNER_TASK": json.dumps(TASK),
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def test_topics_default_to_the_campaigns_names_and_retraining_to_50_labels_or_60_s() -> None:
    settings = settings_from_env(environ())
    assert settings.campaign == "human-data/sms"
    assert settings.items_topic == "labelops.human-data.sms.items"
    assert settings.labels_topic == "labelops.human-data.sms.labels"
    assert settings.predictions_topic == "labelops.human-data.sms.predictions"
    assert (settings.retrain_labels, settings.retrain_seconds) == (50, 60)
    assert settings.task.choices == ["ham", "spam"]
    assert settings.kafka_config() == {"bootstrap.servers": "kafka:9092"}


def test_topics_schedule_and_kafka_security_can_be_set() -> None:
    settings = settings_from_env(
        environ(
            LABELOPS_LEARNER_ITEMS_TOPIC="a",
            LABELOPS_LEARNER_LABELS_TOPIC="b",
            LABELOPS_LEARNER_PREDICTIONS_TOPIC="c",
            LABELOPS_LEARNER_RETRAIN_LABELS="5",
            LABELOPS_LEARNER_RETRAIN_SECONDS="7",
            LABELOPS_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            LABELOPS_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
            LABELOPS_KAFKA_SASL_USERNAME="learner",
            LABELOPS_KAFKA_SASL_PASSWORD="s3cret",
        )
    )
    assert (settings.items_topic, settings.labels_topic, settings.predictions_topic) == (
        "a",
        "b",
        "c",
    )
    assert (settings.retrain_labels, settings.retrain_seconds) == (5, 7)
    assert settings.kafka_config() == {
        "bootstrap.servers": "kafka:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "learner",
        "sasl.password": "s3cret",
    }


def test_the_task_needs_no_instructions() -> None:
    task = {"type": "rating", "scale": {"min": 1, "max": 5}}
    settings = settings_from_env(environ(LABELOPS_LEARNER_TASK=json.dumps(task)))
    assert settings.task.scale is not None and settings.task.scale.max == 5


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"LABELOPS_KAFKA_BOOTSTRAP": None}, "LABELOPS_KAFKA_BOOTSTRAP is not set"),
        ({"LABELOPS_LEARNER_CAMPAIGN": "sms"}, "LABELOPS_LEARNER_CAMPAIGN='sms' is not"),
        ({"LABELOPS_LEARNER_CAMPAIGN": "a/b/c"}, "is not <namespace>/<name>"),
        ({"LABELOPS_LEARNER_TASK": "{"}, "LABELOPS_LEARNER_TASK is not JSON"),
        ({"LABELOPS_LEARNER_TASK": '{"type": "poem"}'}, "LABELOPS_LEARNER_TASK is not a valid"),
        ({"LABELOPS_LEARNER_RETRAIN_LABELS": "many"}, "LABELOPS_LEARNER_RETRAIN_LABELS='many'"),
        ({"LABELOPS_LEARNER_RETRAIN_LABELS": "0"}, "=0 is out of range: allowed 1.."),
        ({"LABELOPS_LEARNER_PORT": "70000"}, "LABELOPS_LEARNER_PORT=70000 is out of range"),
    ],
)
def test_a_wrong_environment_names_the_variable(
    overrides: dict[str, str | None], expected: str
) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        settings_from_env(environ(**overrides))
    assert expected in str(caught.value)


def test_a_config_error_never_echoes_the_kafka_password() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_env(environ(LABELOPS_KAFKA_SASL_PASSWORD="s3cret", LABELOPS_LEARNER_PORT="x"))
    assert "s3cret" not in str(caught.value)
