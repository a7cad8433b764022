"""spec.workers.autoscaling: the model's rules, who owns replicas, and the objects written."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from labelops.api.campaign import CampaignSpec
from labelops.api.kafka_connection import KafkaConnection
from labelops.api.naming import CampaignNames
from labelops.operator import autoscaling, plan

NAMES = CampaignNames("team", "rlhf")
META = {"name": "x", "namespace": "team", "labels": {"a": "b"}}
SCRAM = KafkaConnection(
    bootstrap="kafka:9092",
    security_protocol="SASL_PLAINTEXT",
    sasl_mechanism="SCRAM-SHA-512",
    username="u",
    password="p",
)


def spec(**workers: Any) -> CampaignSpec:
    return CampaignSpec.model_validate(
        {
            "task": {"type": "free-text", "instructions": "write"},
            "target": {"items": 10},
            "labelers": {"tokenSecretRef": {"name": "tokens"}},
            "workers": workers,
            "paused": workers.pop("paused", False),
        }
    )


def decide(s: CampaignSpec, met: bool = False, access: KafkaConnection | None = None) -> Any:
    return autoscaling.scaling(NAMES, META, s, met, "kafka:9092", access)


def test_without_autoscaling_the_operator_sets_replicas_as_before() -> None:
    assert decide(spec(replicas=3)) == autoscaling.Scaling(3)
    assert decide(spec(replicas=3), met=True) == autoscaling.Scaling(0)


def test_hpa_owns_replicas_while_labeling() -> None:
    s = spec(autoscaling={"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilization": 60})
    scale = decide(s)
    assert scale.replicas is None
    (hpa,) = scale.autoscaler
    assert hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["metadata"]["name"] == NAMES.worker
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": NAMES.worker,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    target = hpa["spec"]["metrics"][0]["resource"]["target"]
    assert target == {"type": "Utilization", "averageUtilization": 60}


def test_completed_removes_the_autoscaler_and_scales_to_zero() -> None:
    for mode in ("hpa", "keda"):
        s = spec(autoscaling={"mode": mode, "minReplicas": 1, "maxReplicas": 4})
        assert decide(s, met=True) == autoscaling.Scaling(0)


def test_paused_removes_the_autoscaler_and_keeps_at_least_one_worker() -> None:
    s = spec(paused=True, autoscaling={"mode": "keda", "minReplicas": 0, "maxReplicas": 4})
    assert decide(s) == autoscaling.Scaling(1)
    s = spec(paused=True, autoscaling={"minReplicas": 3, "maxReplicas": 4})
    assert decide(s) == autoscaling.Scaling(3)


def test_keda_scales_on_the_workers_lag_on_the_items_topic_with_their_scram_user() -> None:
    s = spec(autoscaling={"mode": "keda", "minReplicas": 0, "maxReplicas": 8, "lagThreshold": 50})
    scaled, auth = decide(s, access=SCRAM).autoscaler
    assert scaled["kind"] == "ScaledObject"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 8)
    trigger = triggers_by_type(scaled)["kafka"]
    assert trigger["metadata"]["topic"] == NAMES.items_topic
    assert trigger["metadata"]["consumerGroup"] == NAMES.consumer_group
    assert trigger["metadata"]["lagThreshold"] == "50"
    assert trigger["metadata"]["sasl"] == "scram_sha512"
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    assert auth["kind"] == "TriggerAuthentication"
    keys = {ref["parameter"]: (ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
    # The keys the operator writes into the workers' Kafka Secret.
    written = plan_secret_keys()
    assert keys["username"] == (NAMES.kafka_secret, "LABELOPS_KAFKA_SASL_USERNAME")
    assert keys["password"] == (NAMES.kafka_secret, "LABELOPS_KAFKA_SASL_PASSWORD")
    assert {key for _, key in keys.values()} <= written


def triggers_by_type(scaled: dict[str, Any]) -> dict[str, dict[str, Any]]:
    triggers = scaled["spec"]["triggers"]
    by_type = {trigger["type"]: trigger for trigger in triggers}
    assert len(by_type) == len(triggers), f"two triggers of one type: {triggers}"
    return by_type


def test_keda_also_scales_on_active_leases_read_from_the_worker_service() -> None:
    s = spec(autoscaling={"mode": "keda", "maxReplicas": 8, "leasesPerReplica": 40})
    for access in (None, SCRAM):
        scaled = decide(s, access=access).autoscaler[0]
        triggers = triggers_by_type(scaled)
        assert set(triggers) == {"kafka", "metrics-api"}
        leases = triggers["metrics-api"]
        assert leases == {
            "type": "metrics-api",
            # KEDA aims at targetValue per pod: ceil(active leases / leasesPerReplica) pods.
            "metricType": "AverageValue",
            "metadata": {
                "url": "http://rlhf-worker.team.svc:8080/metrics",
                "format": "prometheus",
                "valueLocation": "labelops_worker_active_leases",
                "targetValue": "40",
            },
        }
        # The Service's name and port, as the plan writes them.
        service = plan.worker_service(plan.CampaignRef("team", "rlhf", "uid", 1))
        assert service["metadata"]["name"] == NAMES.worker
        assert [p["port"] for p in service["spec"]["ports"]] == [8080]


def test_leases_per_replica_defaults_to_100() -> None:
    scaled = decide(spec(autoscaling={"mode": "keda", "maxReplicas": 2})).autoscaler[0]
    assert triggers_by_type(scaled)["metrics-api"]["metadata"]["targetValue"] == "100"


@pytest.mark.parametrize("leases", [0, -1, 100_001])
def test_leases_per_replica_out_of_bounds_is_refused_naming_field_and_value(leases: int) -> None:
    with pytest.raises(ValidationError) as err:
        spec(autoscaling={"mode": "keda", "maxReplicas": 2, "leasesPerReplica": leases})
    (error,) = err.value.errors()
    assert error["loc"][-1] == "leasesPerReplica"
    assert error["input"] == leases
    assert (
        "greater than or equal to 1" in error["msg"]
        or "less than or equal to 100000" in (error["msg"])
    )


def plan_secret_keys() -> set[str]:
    from labelops.operator.kafka_access import credentials_secret

    return set(credentials_secret(dict(META), SCRAM)["data"])


def test_keda_without_broker_authentication_has_no_trigger_authentication() -> None:
    s = spec(autoscaling={"mode": "keda", "maxReplicas": 2})
    (scaled,) = decide(s).autoscaler
    assert all("authenticationRef" not in t for t in scaled["spec"]["triggers"])


def test_keda_missing_names_the_field_the_value_and_what_is_missing() -> None:
    s = spec(autoscaling={"mode": "keda", "maxReplicas": 2})
    message = autoscaling.keda_missing(s, keda_served=False)
    assert message is not None
    assert "spec.workers.autoscaling.mode 'keda'" in message
    assert "scaledobjects.keda.sh/v1alpha1" in message
    assert autoscaling.keda_missing(s, keda_served=True) is None
    hpa = spec(autoscaling={"maxReplicas": 2})
    assert autoscaling.keda_missing(hpa, keda_served=False) is None


@pytest.mark.parametrize(
    ("auto", "field"),
    [
        ({"minReplicas": 5, "maxReplicas": 2}, "minReplicas"),
        ({"maxReplicas": 0}, "maxReplicas"),
        ({"maxReplicas": 2, "targetCPUUtilization": 0}, "targetCPUUtilization"),
        ({"maxReplicas": 2, "mode": "vpa"}, "mode"),
    ],
)
def test_bad_autoscaling_is_refused_naming_the_field(auto: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        spec(autoscaling=auto)
    assert field in str(err.value) or "maxReplicas" in str(err.value)


def test_cel_rules_of_autoscaling_are_in_the_crd() -> None:
    from labelops.api.crd import crd

    text = str(crd())
    assert "self.minReplicas <= self.maxReplicas" in text
    assert "self.minReplicas >= 1 || self.mode == 'keda'" in text


def test_owns_replicas_reads_the_managed_fields_of_an_apply() -> None:
    def deployment(manager: str, operation: str, fields: dict[str, Any]) -> dict[str, Any]:
        entry = {"manager": manager, "operation": operation, "fieldsV1": {"f:spec": fields}}
        return {"metadata": {"managedFields": [entry]}}

    assert autoscaling.owns_replicas(
        deployment("labelops", "Apply", {"f:replicas": {}}), "labelops"
    )
    assert not autoscaling.owns_replicas(deployment("labelops", "Apply", {}), "labelops")
    assert not autoscaling.owns_replicas(
        deployment("kube-controller-manager", "Update", {"f:replicas": {}}), "labelops"
    )
    assert not autoscaling.owns_replicas(None, "labelops")


def test_the_handover_applies_only_the_live_replicas() -> None:
    live = {"metadata": {"name": "w", "namespace": "n", "uid": "u"}, "spec": {"replicas": 3}}
    assert autoscaling.replicas_handover(live) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "w", "namespace": "n"},
        "spec": {"replicas": 3},
    }


def test_the_deployment_leaves_replicas_out_for_the_autoscaler() -> None:
    s = spec(autoscaling={"maxReplicas": 2})
    ref = plan.CampaignRef("team", "rlhf", "uid", 1)
    env = plan.WorkerEnvironment("labelops:0.1.0", "kafka:9092", plan.PostgresEndpoint("h", 1, "d"))
    assert "replicas" not in plan.worker_deployment(ref, s, env, None, "h")["spec"]
    assert plan.worker_deployment(ref, s, env, 0, "h")["spec"]["replicas"] == 0


def test_the_connection_limit_is_checked_against_max_replicas() -> None:
    s = spec(autoscaling={"maxReplicas": 50})
    problem = plan.connection_limit_problem(s)
    assert problem is not None and "spec.workers.autoscaling.maxReplicas 50" in problem
