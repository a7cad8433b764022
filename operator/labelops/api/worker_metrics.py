"""Names of the worker's Prometheus metrics that something besides a dashboard reads: the
operator points KEDA's leases trigger at one (operator/autoscaling.py), the worker exposes it
(worker/metrics.py). Here, so that neither imports the other and the name cannot drift."""

from __future__ import annotations

ACTIVE_LEASES_METRIC = "labelops_worker_active_leases"
ACTIVE_LABELERS_METRIC = "labelops_worker_active_labelers"
METRICS_PATH = "/metrics"
