"""spec.workers.autoscaling: who sets the worker Deployment's replicas, and the autoscaler
objects the operator writes. Pure: no I/O; reconcile applies what these functions return.

While the campaign labels, an autoscaler owns `spec.replicas`: a HorizontalPodAutoscaler on
CPU (mode hpa) or a KEDA ScaledObject (mode keda) with two triggers, the items topic's
consumer lag (with a TriggerAuthentication reading the campaign's `<name>-kafka` Secret on a
SCRAM broker) and the campaign's active leases, read by KEDA's metrics-api scaler from the
worker Service's /metrics (the gauge is campaign-wide, so any one replica answers it).
The operator then applies its Deployment without `replicas`. Server-side apply would remove
a field its manager stops applying (the API server then defaults it to 1, fighting the
autoscaler), so the operator first hands the field over: it applies only `replicas`, at the
live value, as the field manager HANDOVER_MANAGER, and only then drops it from its own
apply (Kubernetes docs, "Server-Side Apply", "Transferring ownership").

Once the target is met the autoscaler object is deleted and the operator takes replicas
back (a forced apply) at 0: an HPA cannot hold 0 without the HPAScaleToZero feature gate.
Paused likewise removes the autoscaler, and the workers stay at minReplicas (at least 1): a
paused campaign keeps workers, to ingest and to accept labels of leases already held.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labelops.api.campaign import Autoscaling, AutoscalingMode, CampaignSpec
from labelops.api.kafka_connection import (
    ENV_SASL_PASSWORD,
    ENV_SASL_USERNAME,
    ENV_SSL_CA_PEM,
    KafkaConnection,
)
from labelops.api.naming import CampaignNames
from labelops.api.worker_configmap import WORKER_PORT
from labelops.api.worker_metrics import ACTIVE_LEASES_METRIC, METRICS_PATH
from labelops.operator.plan import desired_replicas

HANDOVER_MANAGER = "labelops-handover"
HPA_API_VERSION = "autoscaling/v2"
KEDA_GROUP = "keda.sh"
KEDA_VERSION = "v1alpha1"
KEDA_API_VERSION = f"{KEDA_GROUP}/{KEDA_VERSION}"
SCALED_OBJECTS = "scaledobjects"
TRIGGER_AUTHENTICATIONS = "triggerauthentications"
# KEDA's own names of SASL mechanisms, by the name Kafka clients use.
_KEDA_SASL = {
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
    "PLAIN": "plaintext",
}


@dataclass(frozen=True)
class Scaling:
    """What a pass does with the workers' scale.

    replicas: the value the operator applies; None while an autoscaler owns the field.
    autoscaler: the objects to apply (HPA, or ScaledObject and TriggerAuthentication);
    empty: delete ours if there are any.
    """

    replicas: int | None
    autoscaler: tuple[dict[str, Any], ...] = ()


def keda_missing(spec: CampaignSpec, keda_served: bool) -> str | None:
    """Why mode keda cannot be served here, or None."""
    scaling = spec.workers.autoscaling
    if scaling is None or scaling.mode != AutoscalingMode.KEDA or keda_served:
        return None
    return (
        f"spec.workers.autoscaling.mode {scaling.mode.value!r} needs KEDA, but the API server "
        f"does not serve {SCALED_OBJECTS}.{KEDA_GROUP}/{KEDA_VERSION}: install KEDA, or use "
        "mode 'hpa'"
    )


def scaling(
    names: CampaignNames,
    metadata: Mapping[str, Any],
    spec: CampaignSpec,
    target_met: bool,
    kafka_bootstrap: str,
    kafka_access: KafkaConnection | None,
) -> Scaling:
    """The pass's decision; `metadata` is what each written object carries (name replaced)."""
    auto = spec.workers.autoscaling
    if auto is None:
        return Scaling(desired_replicas(spec, target_met))
    if target_met:
        return Scaling(0)
    if spec.paused:
        return Scaling(max(1, auto.min_replicas))
    if auto.mode == AutoscalingMode.HPA:
        return Scaling(None, (horizontal_pod_autoscaler(names, metadata, auto),))
    objects = [scaled_object(names, metadata, auto, kafka_bootstrap, kafka_access)]
    if _authenticates(kafka_access):
        assert kafka_access is not None
        objects.append(trigger_authentication(names, metadata, kafka_access))
    return Scaling(None, tuple(objects))


def _named(metadata: Mapping[str, Any], name: str) -> dict[str, Any]:
    return {**metadata, "name": name}


def _target(names: CampaignNames) -> dict[str, str]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": names.worker}


def horizontal_pod_autoscaler(
    names: CampaignNames, metadata: Mapping[str, Any], auto: Autoscaling
) -> dict[str, Any]:
    return {
        "apiVersion": HPA_API_VERSION,
        "kind": "HorizontalPodAutoscaler",
        "metadata": _named(metadata, names.worker),
        "spec": {
            "scaleTargetRef": _target(names),
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": auto.target_cpu_utilization,
                        },
                    },
                }
            ],
        },
    }


def _authenticates(access: KafkaConnection | None) -> bool:
    return access is not None and access.sasl_mechanism is not None


def scaled_object(
    names: CampaignNames,
    metadata: Mapping[str, Any],
    auto: Autoscaling,
    kafka_bootstrap: str,
    kafka_access: KafkaConnection | None,
) -> dict[str, Any]:
    """KEDA's Kafka scaler on the workers' lag on the items topic (their consumer group), and
    its metrics-api scaler on the campaign's active leases (leases_trigger)."""
    trigger_metadata = {
        "bootstrapServers": kafka_bootstrap,
        "consumerGroup": names.consumer_group,
        "topic": names.items_topic,
        "lagThreshold": str(auto.lag_threshold),
        # Before the workers' group committed anything, count from the start of the topic.
        "offsetResetPolicy": "earliest",
    }
    trigger: dict[str, Any] = {"type": "kafka", "metadata": trigger_metadata}
    if kafka_access is not None and _authenticates(kafka_access):
        mechanism = kafka_access.sasl_mechanism or ""
        trigger_metadata["sasl"] = _KEDA_SASL.get(mechanism, mechanism.lower())
        trigger_metadata["tls"] = (
            "enable" if kafka_access.security_protocol == "SASL_SSL" else ("disable")
        )
        trigger["authenticationRef"] = {"name": names.kafka_secret}
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": _named(metadata, names.worker),
        "spec": {
            "scaleTargetRef": _target(names),
            "minReplicaCount": auto.min_replicas,
            "maxReplicaCount": auto.max_replicas,
            "triggers": [trigger, leases_trigger(names, auto)],
        },
    }


def worker_metrics_url(names: CampaignNames) -> str:
    """The worker Service's /metrics, by the name KEDA's operator (in another namespace)
    resolves."""
    return f"http://{names.worker}.{names.namespace}.svc:{WORKER_PORT}{METRICS_PATH}"


def leases_trigger(names: CampaignNames, auto: Autoscaling) -> dict[str, Any]:
    """KEDA's metrics-api scaler on labelops_worker_active_leases, in the Prometheus text
    format. AverageValue: KEDA aims at leasesPerReplica leases per worker pod. One request
    through the Service, never aggregated over the pods' endpoints: every replica reports the
    same campaign-wide value, so a sum would count it once per pod. With no worker running the
    read fails; KEDA then keeps the replicas as they are unless another trigger is active, so
    scaled to zero, items on the topic (the lag trigger) wake the workers."""
    return {
        "type": "metrics-api",
        "metricType": "AverageValue",
        "metadata": {
            "url": worker_metrics_url(names),
            "format": "prometheus",
            "valueLocation": ACTIVE_LEASES_METRIC,
            "targetValue": str(auto.leases_per_replica),
        },
    }


def trigger_authentication(
    names: CampaignNames, metadata: Mapping[str, Any], access: KafkaConnection
) -> dict[str, Any]:
    """KEDA reads the workers' own SCRAM user from their `<name>-kafka` Secret (the keys
    kafka_access.credentials_secret writes): the scaler reads lag as the workers' user."""
    secret = names.kafka_secret
    refs = [
        {"parameter": "username", "name": secret, "key": ENV_SASL_USERNAME},
        {"parameter": "password", "name": secret, "key": ENV_SASL_PASSWORD},
    ]
    if access.ssl_ca_pem:
        refs.append({"parameter": "ca", "name": secret, "key": ENV_SSL_CA_PEM})
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "TriggerAuthentication",
        "metadata": _named(metadata, names.kafka_secret),
        "spec": {"secretTargetRef": refs},
    }


def owns_replicas(deployment: Mapping[str, Any] | None, manager: str) -> bool:
    """Whether `manager` applied (and so owns) the Deployment's spec.replicas."""
    entries = ((deployment or {}).get("metadata") or {}).get("managedFields") or []
    for entry in entries:
        if entry.get("manager") != manager or entry.get("operation") != "Apply":
            continue
        fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:replicas" in fields:
            return True
    return False


def replicas_handover(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The apply, as HANDOVER_MANAGER, that keeps the live replicas when the operator's own
    manager stops applying the field."""
    meta = deployment["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"replicas": int((deployment.get("spec") or {}).get("replicas") or 0)},
    }
