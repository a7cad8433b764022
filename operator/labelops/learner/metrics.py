"""The learner's Prometheus metrics (own registry, served on /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Info


class LearnerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.last_train = Gauge(
            "labelops_learner_last_train_timestamp_seconds",
            "When the current model was trained (Unix time); 0 before the first model.",
            registry=r,
        )
        self.labels_trained_on = Gauge(
            "labelops_learner_labels_trained_on",
            "Human labels the current model was trained on.",
            registry=r,
        )
        self.items_trained_on = Gauge(
            "labelops_learner_items_trained_on",
            "Items with a consolidated human label the current model was trained on.",
            registry=r,
        )
        self.version = Info(
            "labelops_learner_model", "The version the learner publishes now.", registry=r
        )
        self.predictions = Counter(
            "labelops_learner_predictions_published",
            "Predictions Kafka acknowledged on the predictions topic.",
            registry=r,
        )
        self.trainings = Counter(
            "labelops_learner_trainings",
            "Training attempts by outcome (trained, waiting: cannot train yet, failed).",
            ["outcome"],
            registry=r,
        )
        self.last_error = Info(
            "labelops_learner_last_error",
            "The last reason the learner could not train or publish ('' once it succeeds).",
            registry=r,
        )
        self.last_error_time = Gauge(
            "labelops_learner_last_error_timestamp_seconds",
            "When the last error happened (Unix time); 0 if none.",
            registry=r,
        )
        self.items = Gauge("labelops_learner_items", "Items read from the items topic.", registry=r)
        self.human_labels = Gauge(
            "labelops_learner_human_labels", "Human labels read on known items.", registry=r
        )
        self.skipped = Counter(
            "labelops_learner_messages_skipped",
            "Messages the learner could not use, by topic kind.",
            ["topic"],
            registry=r,
        )
        self.version.info({"version": ""})
        self.last_error.info({"message": ""})
