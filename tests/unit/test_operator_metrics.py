"""The per-campaign gauges the chart's alerts read mirror the status the operator writes."""

from prometheus_client import REGISTRY

from labelops.operator import metrics


def sample(metric: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


def test_status_is_mirrored_into_gauges_and_removed_on_delete() -> None:
    status = {
        "conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "Stalled", "status": "True"},
        ],
        "progress": {"labels": 300, "labelsTarget": 900, "eta": "2026-12-01T00:00:00Z"},
    }
    spec = {"deadline": "2026-11-30T00:00:00Z"}
    metrics.observe_campaign("ns", "c1", spec, status)

    cond = "labelops_campaign_condition"
    assert sample(cond, namespace="ns", name="c1", type="Stalled", status="True") == 1.0
    assert sample(cond, namespace="ns", name="c1", type="Stalled", status="False") == 0.0
    assert sample(cond, namespace="ns", name="c1", type="Ready", status="False") == 1.0
    assert sample(cond, namespace="ns", name="c1", type="TargetMet", status="Unknown") == 1.0
    ratio = sample("labelops_campaign_progress_ratio", namespace="ns", name="c1")
    assert ratio is not None and abs(ratio - 1 / 3) < 1e-9
    deadline = sample("labelops_campaign_deadline_timestamp_seconds", namespace="ns", name="c1")
    eta = sample("labelops_campaign_eta_timestamp_seconds", namespace="ns", name="c1")
    assert deadline is not None and eta is not None and eta - deadline == 86400

    metrics.observe_campaign("ns", "c1", {}, {"conditions": []})
    assert sample("labelops_campaign_deadline_timestamp_seconds", namespace="ns", name="c1") is None

    metrics.forget_campaign("ns", "c1")
    assert sample(cond, namespace="ns", name="c1", type="Stalled", status="True") is None
    assert sample("labelops_campaign_progress_ratio", namespace="ns", name="c1") is None
