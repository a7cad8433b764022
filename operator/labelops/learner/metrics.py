"""The learner's Prometheus metrics (own registry, served on /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

Metric = Gauge | Counter | Info

# attribute: (kind, name after "labelops_learner_", help, label names). Counters get the
# "_total" suffix from prometheus_client.
_METRICS: dict[str, tuple[type[Metric], str, str, tuple[str, ...]]] = {
    "last_train": (
        Gauge,
        "last_train_timestamp_seconds",
        "When the current model was trained (Unix time); 0 before the first model.",
        (),
    ),
    "labels_trained_on": (
        Gauge,
        "labels_trained_on",
        "Human labels the current model was trained on.",
        (),
    ),
    "items_trained_on": (
        Gauge,
        "items_trained_on",
        "Items with a consolidated human label the current model was trained on.",
        (),
    ),
    "version": (Info, "model", "The version the learner publishes now.", ()),
    "predictions": (
        Counter,
        "predictions_published",
        "Predictions Kafka acknowledged on the predictions topic.",
        (),
    ),
    "trainings": (
        Counter,
        "trainings",
        "Training attempts by outcome (trained, waiting: cannot train yet, failed).",
        ("outcome",),
    ),
    "last_error": (
        Info,
        "last_error",
        "The last reason the learner could not train or publish ('' once it succeeds).",
        (),
    ),
    "last_error_time": (
        Gauge,
        "last_error_timestamp_seconds",
        "When the last error happened (Unix time); 0 if none.",
        (),
    ),
    "items": (Gauge, "items", "Items read from the items topic.", ()),
    "human_labels": (Gauge, "human_labels", "Human labels read on known items.", ()),
    "skipped": (
        Counter,
        "messages_skipped",
        "Messages the learner could not use, by topic kind.",
        ("topic",),
    ),
}


class LearnerMetrics:
    """One attribute per row of _METRICS, of the kind the row names."""

    last_train: Gauge
    labels_trained_on: Gauge
    items_trained_on: Gauge
    version: Info
    predictions: Counter
    trainings: Counter
    last_error: Info
    last_error_time: Gauge
    items: Gauge
    human_labels: Gauge
    skipped: Counter

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for attribute, (kind, name, documentation, labels) in _METRICS.items():
            metric = kind(f"labelops_learner_{name}", documentation, labels, registry=self.registry)
            setattr(self, attribute, metric)
        self.version.info({"version": ""})
        self.last_error.info({"message": ""})
