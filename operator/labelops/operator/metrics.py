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
from labelops.api.campaign import MODEL_TRUSTED as MODEL_TRUSTED_CONDITION

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
PASS_STEP = Histogram(
    "labelops_pass_step_seconds",
    "Wall time of the steps of a reconcile pass (waiting: for the campaign's lock and a "
    "pass slot; then topics, kafka-access, database, workers, status), to see where a "
    "thousand campaigns applied at once spend their time.",
    ["step"],
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
# Models in the loop and data quality (issues 10 and 11); the chart alerts on trust and
# agreement and its dashboard plots the rest.
CAMPAIGN_LABELS = Gauge(
    "labelops_campaign_labels",
    "Accepted labels (human and machine); rate() of it is the label rate.",
    ["namespace", "name"],
)
CAMPAIGN_DEAD_LETTERED = Gauge(
    "labelops_campaign_dead_lettered",
    "Item and prediction messages refused at ingest (status.counters.deadLettered).",
    ["namespace", "name"],
)
MACHINE_SHARE = Gauge(
    "labelops_campaign_machine_share_ratio",
    "Share of the completed items a model labeled, 0..1 (absent before any completed).",
    ["namespace", "name"],
)
AUDIT_LOWER_BOUND = Gauge(
    "labelops_campaign_model_audit_lower_bound",
    "One-sided Clopper-Pearson lower bound of the latest model version's audited accuracy.",
    ["namespace", "name"],
)
MODEL_TRUSTED = Gauge(
    "labelops_campaign_model_trusted",
    "1 while auto-accept is on for the latest model version, else 0 (only for campaigns "
    "with model.autoAccept).",
    ["namespace", "name"],
)
AGREEMENT_ALPHA = Gauge(
    "labelops_campaign_agreement_alpha",
    "Krippendorff's alpha of the human labels (absent until computed).",
    ["namespace", "name"],
)
MIN_AGREEMENT = Gauge(
    "labelops_campaign_min_agreement",
    "spec.quality.minAgreement: AgreementLow fires while alpha stays below it.",
    ["namespace", "name"],
)
GOLD_ACCURACY = Gauge(
    "labelops_campaign_gold_accuracy_ratio",
    "Accuracy of all labelers' gold answers, 0..1 (absent before any gold answer).",
    ["namespace", "name"],
)
LABELERS_BLOCKED = Gauge(
    "labelops_campaign_labelers_blocked",
    "Labelers blocked (gold rule or spec.labelers.blocked).",
    ["namespace", "name"],
)
PER_CAMPAIGN = (
    CAMPAIGN_PROGRESS,
    CAMPAIGN_DEADLINE,
    CAMPAIGN_ETA,
    CAMPAIGN_LABELS,
    CAMPAIGN_DEAD_LETTERED,
    MACHINE_SHARE,
    AUDIT_LOWER_BOUND,
    MODEL_TRUSTED,
    AGREEMENT_ALPHA,
    MIN_AGREEMENT,
    GOLD_ACCURACY,
    LABELERS_BLOCKED,
)
CONDITION_STATUSES = ("True", "False", "Unknown")
OBSERVED_CONDITIONS = (*CONDITION_TYPES, MODEL_TRUSTED_CONDITION)


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
    for kind in OBSERVED_CONDITIONS:
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
    _observe_models_and_quality(namespace, name, spec, status)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _observe_models_and_quality(
    namespace: str, name: str, spec: Mapping[str, Any], status: Mapping[str, Any]
) -> None:
    progress = status.get("progress") or {}
    counters = status.get("counters") or {}
    model = status.get("model") or {}
    quality = status.get("quality") or {}
    auto_accept = (spec.get("model") or {}).get("autoAccept") is not None
    completed = progress.get("itemsCompleted") or 0
    share = min(1.0, (counters.get("machineLabeled") or 0) / completed) if completed else None
    values = {
        CAMPAIGN_LABELS: _number(progress.get("labels")) if progress else None,
        CAMPAIGN_DEAD_LETTERED: _number(counters.get("deadLettered")) if counters else None,
        MACHINE_SHARE: share,
        AUDIT_LOWER_BOUND: _number(model.get("auditLowerBound")),
        MODEL_TRUSTED: (1.0 if model.get("trusted") else 0.0) if auto_accept else None,
        AGREEMENT_ALPHA: _number(quality.get("alpha")),
        MIN_AGREEMENT: _number((spec.get("quality") or {}).get("minAgreement")),
        GOLD_ACCURACY: _number(quality.get("goldAccuracy")),
        LABELERS_BLOCKED: _number(quality.get("labelersBlocked")) if quality else None,
    }
    for gauge, value in values.items():
        _set_or_remove(gauge, namespace, name, value)


def forget_campaign(namespace: str, name: str) -> None:
    """A deleted campaign's series go with it, so alerts about it resolve."""
    for kind in OBSERVED_CONDITIONS:
        for value in CONDITION_STATUSES:
            with suppress(KeyError):
                CAMPAIGN_CONDITION.remove(namespace, name, kind, value)
    for gauge in PER_CAMPAIGN:
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


@contextmanager
def pass_step(step: str) -> Iterator[None]:
    """Time one step of a reconcile pass (labelops_pass_step_seconds), however it ends."""
    started = time.perf_counter()
    try:
        yield
    finally:
        PASS_STEP.labels(step).observe(time.perf_counter() - started)


def serve(port: int) -> Any:
    """Start the /metrics HTTP server in a daemon thread; returns the server to shut down."""
    server, _thread = start_http_server(port)
    return server
