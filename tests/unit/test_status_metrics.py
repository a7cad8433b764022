"""The model and quality gauges mirror status.model / status.quality and the spec's
thresholds, and go with the campaign."""

from prometheus_client import REGISTRY

from labelops.operator import metrics


def sample(metric: str) -> float | None:
    return REGISTRY.get_sample_value(metric, {"namespace": "ns", "name": "m1"})


STATUS = {
    "conditions": [{"type": "ModelTrusted", "status": "False"}],
    "progress": {"labels": 120, "labelsTarget": 300, "itemsCompleted": 80},
    "counters": {"machineLabeled": 20, "deadLettered": 4},
    "model": {"version": "v1", "trusted": False, "auditLowerBound": 0.9123},
    "quality": {"alpha": 0.55, "goldAccuracy": 0.875, "labelersBlocked": 2},
}
SPEC = {"model": {"autoAccept": {"targetAccuracy": 0.95}}, "quality": {"minAgreement": 0.6}}


def test_model_and_quality_gauges_follow_status_and_spec() -> None:
    metrics.observe_campaign("ns", "m1", SPEC, STATUS)
    assert sample("labelops_campaign_machine_share_ratio") == 0.25
    assert sample("labelops_campaign_model_audit_lower_bound") == 0.9123
    assert sample("labelops_campaign_model_trusted") == 0.0
    assert sample("labelops_campaign_agreement_alpha") == 0.55
    assert sample("labelops_campaign_min_agreement") == 0.6
    assert sample("labelops_campaign_gold_accuracy_ratio") == 0.875
    assert sample("labelops_campaign_labelers_blocked") == 2.0
    assert sample("labelops_campaign_labels") == 120.0
    assert sample("labelops_campaign_dead_lettered") == 4.0
    trusted_false = REGISTRY.get_sample_value(
        "labelops_campaign_condition",
        {"namespace": "ns", "name": "m1", "type": "ModelTrusted", "status": "False"},
    )
    assert trusted_false == 1.0

    trusted = {**STATUS, "model": {**STATUS["model"], "trusted": True}}  # type: ignore[dict-item]
    metrics.observe_campaign("ns", "m1", SPEC, trusted)
    assert sample("labelops_campaign_model_trusted") == 1.0

    # Without autoAccept there is no trust to alert on; without minAgreement no floor.
    metrics.observe_campaign("ns", "m1", {}, STATUS)
    assert sample("labelops_campaign_model_trusted") is None
    assert sample("labelops_campaign_min_agreement") is None

    metrics.forget_campaign("ns", "m1")
    for name in ("machine_share_ratio", "agreement_alpha", "labelers_blocked", "labels"):
        assert sample(f"labelops_campaign_{name}") is None
