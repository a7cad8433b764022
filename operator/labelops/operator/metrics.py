"""Prometheus metrics of the operator, served on LABELOPS_METRICS_PORT at /metrics.

Module-level metrics in prometheus_client's default registry: the operator's only
process-wide state (everything else handlers share is in context.OperatorContext).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import kopf
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from labelops.api.campaign import CONDITION_TYPES

RECONCILES = Counter(
    "labelops_reconciles_total",
    "Handler runs by outcome: success, retry (temporary error, retried with backoff) or error.",
    ["handler", "outcome"],
)
ERRORS = Counter(
    "labelops_reconcile_errors_total",
    "Failed handler runs by the kind of error.",
    ["handler", "error"],
)
DURATION = Histogram(
    "labelops_reconcile_duration_seconds",
    "Wall time of handler runs.",
    ["handler"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PROGRESS_READS = Counter(
    "labelops_progress_reads_total", "O(1) progress reads from campaign schemas."
)


# Per-campaign gauges, what the chart's PrometheusRule alerts on (stalled, behind deadline).
CAMPAIGN_CONDITION = Gauge(
    "labelops_campaign_condition",
    "1 for each condition's current status (True, False or Unknown), 0 for the others.",
    ["namespace", "name", "type", "status"],
)
CAMPAIGN_PROGRESS = Gauge(
    "labelops_campaign_progress_ratio",
    "Accepted labels / labels target, 0..1.",
    ["namespace", "name"],
)
CAMPAIGN_DEADLINE = Gauge(
    "labelops_campaign_deadline_timestamp_seconds",
    "spec.deadline as a Unix time (absent when the campaign has none).",
    ["namespace", "name"],
)
CAMPAIGN_ETA = Gauge(
    "labelops_campaign_eta_timestamp_seconds",
    "Projected finish at the current label rate, as a Unix time (absent while unknown).",
    ["namespace", "name"],
)
CONDITION_STATUSES = ("True", "False", "Unknown")


def _timestamp(value: Any) -> float | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _set_or_remove(gauge: Gauge, namespace: str, name: str, value: float | None) -> None:
    if value is None:
        with suppress(KeyError):
            gauge.remove(namespace, name)
    else:
        gauge.labels(namespace, name).set(value)


def observe_campaign(
    namespace: str, name: str, spec: Mapping[str, Any], status: Mapping[str, Any]
) -> None:
    """Mirror a campaign's written status into the per-campaign gauges."""
    current = {c["type"]: c["status"] for c in status.get("conditions") or []}
    for kind in CONDITION_TYPES:
        for value in CONDITION_STATUSES:
            CAMPAIGN_CONDITION.labels(namespace, name, kind, value).set(
                1.0 if current.get(kind, "Unknown") == value else 0.0
            )
    progress = status.get("progress") or {}
    target = progress.get("labelsTarget") or 0
    ratio = min(1.0, progress.get("labels", 0) / target) if target else None
    _set_or_remove(CAMPAIGN_PROGRESS, namespace, name, ratio)
    _set_or_remove(CAMPAIGN_DEADLINE, namespace, name, _timestamp(spec.get("deadline")))
    _set_or_remove(CAMPAIGN_ETA, namespace, name, _timestamp(progress.get("eta")))


def forget_campaign(namespace: str, name: str) -> None:
    """A deleted campaign's series go with it, so alerts about it resolve."""
    for kind in CONDITION_TYPES:
        for value in CONDITION_STATUSES:
            with suppress(KeyError):
                CAMPAIGN_CONDITION.remove(namespace, name, kind, value)
    for gauge in (CAMPAIGN_PROGRESS, CAMPAIGN_DEADLINE, CAMPAIGN_ETA):
        with suppress(KeyError):
            gauge.remove(namespace, name)


@contextmanager
def measured(handler: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    except kopf.TemporaryError:
        RECONCILES.labels(handler, "retry").inc()
        ERRORS.labels(handler, "TemporaryError").inc()
        raise
    except Exception as err:
        RECONCILES.labels(handler, "error").inc()
        ERRORS.labels(handler, type(err).__name__).inc()
        raise
    else:
        RECONCILES.labels(handler, "success").inc()
    finally:
        DURATION.labels(handler).observe(time.perf_counter() - started)


def serve(port: int) -> Any:
    """Start the /metrics HTTP server in a daemon thread; returns the server to shut down."""
    server, _thread = start_http_server(port)
    return server
