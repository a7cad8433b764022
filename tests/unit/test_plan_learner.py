"""The built-in learner's Deployment: what the operator writes, and that the learner's own
settings module reads it (the variable names live in labelops.learner.config)."""

from __future__ import annotations

from typing import Any

from labelops.api.campaign import CampaignSpec
from labelops.learner.config import settings_from_env
from labelops.operator import plan

REF = plan.CampaignRef("human-data", "sms-spam", "uid-9", 4)
ENV = plan.WorkerEnvironment(
    default_image="registry.local/labelops:1.2.3",
    kafka_bootstrap="kafka.svc:9092",
    postgres=plan.PostgresEndpoint("pg.svc", 5432, "labels"),
)


def spec(learner: dict[str, Any] | None = None, **extra: Any) -> CampaignSpec:
    model: dict[str, Any] = {"autoAccept": {}}
    if learner is not None:
        model["learner"] = learner
    return CampaignSpec.model_validate(
        {
            "task": {
                "type": "classification",
                "instructions": "Is this message spam? " * 50,
                "choices": ["ham", "spam"],
            },
            "target": {"items": 500, "labelsPerItem": 1},
            "labelers": {"tokenSecretRef": {"name": "sms-tokens"}},
            "model": model,
            **extra,
        }
    )


BUILTIN = spec({"type": "builtin", "retrainLabels": 25, "retrainSeconds": 30})


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(deployment)["env"]}


def test_no_learner_deployment_without_a_builtin_learner() -> None:
    assert plan.learner_deployment(REF, spec(), ENV, 1) is None
    no_model = CampaignSpec.model_validate(
        {**BUILTIN.model_dump(by_alias=True, exclude_none=True), "model": None}
    )
    assert plan.learner_deployment(REF, no_model, ENV, 1) is None


def test_the_learner_reads_what_the_operator_writes() -> None:
    deployment = plan.learner_deployment(REF, BUILTIN, ENV, 1)
    assert deployment is not None
    assert deployment["metadata"]["name"] == "sms-spam-learner"
    assert container(deployment)["command"] == ["labelops", "learner"]
    assert container(deployment)["image"] == ENV.default_image
    settings = settings_from_env(env_of(deployment))
    names = REF.names
    assert settings.campaign == "human-data/sms-spam"
    assert settings.task.type.value == "classification"
    assert settings.task.choices == ["ham", "spam"]
    assert settings.kafka.bootstrap == "kafka.svc:9092"
    assert (settings.items_topic, settings.labels_topic, settings.predictions_topic) == (
        names.items_topic,
        names.labels_topic,
        names.predictions_topic,
    )
    assert (settings.retrain_labels, settings.retrain_seconds) == (25, 30)
    assert settings.port == plan.LEARNER_PORT
    assert "instructions" not in env_of(deployment)["LABELOPS_LEARNER_TASK"]


def test_the_learner_has_kafka_only_no_database_no_tokens_no_api_token() -> None:
    deployment = plan.learner_deployment(REF, BUILTIN, ENV, 1)
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    c = container(deployment)
    assert all("valueFrom" not in e for e in c["env"]), "no Secret or ConfigMap values"
    assert not any("POSTGRES" in e["name"] for e in c["env"])
    assert c["envFrom"] == [{"secretRef": {"name": "sms-spam-learner-kafka", "optional": True}}]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_learner_is_owned_and_never_selected_as_a_worker() -> None:
    deployment = plan.learner_deployment(REF, BUILTIN, ENV, 1)
    assert deployment is not None
    [owner] = deployment["metadata"]["ownerReferences"]
    assert owner["uid"] == "uid-9" and owner["controller"] is True
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    worker_selector = REF.names.selector_labels()
    assert not worker_selector.items() <= pod_labels.items(), "the worker Service skips it"
    assert pod_labels["labelops.dev/campaign"] == "sms-spam"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_one_learner_while_labeling_none_when_paused_or_complete() -> None:
    assert plan.desired_learner_replicas(BUILTIN, target_met=False) == 1
    assert plan.desired_learner_replicas(BUILTIN, target_met=True) == 0
    paused = spec({"type": "builtin"}, paused=True)
    assert plan.desired_learner_replicas(paused, target_met=False) == 0
    deployment = plan.learner_deployment(REF, paused, ENV, 0)
    assert deployment is not None and deployment["spec"]["replicas"] == 0
