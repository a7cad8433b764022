"""`labelops learner`: the built-in learner of one campaign, configured by the environment.

Exit codes: 0 after SIGTERM/SIGINT; 2 when the environment is wrong (the message names the
variable); 3 when the campaign's task has no built-in model (NotSupported: the reason goes to
the log and to the pod's termination message, which the operator reports as Stalled); 1 when
Kafka fails for good (Kubernetes restarts the pod, which rebuilds from the topics).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from labelops.api.naming import CampaignNames
from labelops.learner.config import ConfigError, LearnerSettings, settings_from_env
from labelops.learner.http_service import serve
from labelops.learner.kafka_io import KafkaFailed, PredictionPublisher, TopicReader
from labelops.learner.loop import Learner
from labelops.learner.metrics import LearnerMetrics
from labelops.learner.schedule import RetrainPolicy
from labelops.learner.tasks import learning_for, refusal

log = logging.getLogger("labelops.learner")

EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_NOT_SUPPORTED = 3
TERMINATION_LOG = Path("/dev/termination-log")  # Kubernetes' terminationMessagePath default


def run(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    _configure_logging(env.get("LABELOPS_LOG_LEVEL", "INFO"))
    try:
        settings = settings_from_env(env)
    except ConfigError as err:
        log.error("cannot start: %s", err)
        return EXIT_CONFIG
    reason = refusal(settings.task)
    if reason is not None:
        message = f"NotSupported: campaign {settings.campaign}: {reason}"
        log.error("cannot serve this campaign: %s", message)
        _termination_message(message)
        return EXIT_NOT_SUPPORTED
    return serve_learner(settings)


def serve_learner(settings: LearnerSettings) -> int:
    client = CampaignNames(settings.namespace, settings.name).learner_client
    metrics = LearnerMetrics()
    reader = TopicReader(
        settings.kafka_config(), [settings.items_topic, settings.labels_topic], client
    )
    publisher = PredictionPublisher(settings.kafka_config(), settings.predictions_topic, client)
    learner = Learner(
        task_type=settings.task.type,
        learning=learning_for(settings.task),
        items_topic=settings.items_topic,
        labels_topic=settings.labels_topic,
        reader=reader,
        publisher=publisher,
        policy=RetrainPolicy(settings.retrain_labels, settings.retrain_seconds),
        min_labels=settings.min_labels,
        metrics=metrics,
    )
    http = serve(settings.host, settings.port, metrics.registry, learner.alive, learner.ready)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "learner of %s (%s) on port %d: %s + %s -> %s, retrain every %d labels or %ds",
        settings.campaign,
        settings.task.type.value,
        http.server_address[1],
        settings.items_topic,
        settings.labels_topic,
        settings.predictions_topic,
        settings.retrain_labels,
        settings.retrain_seconds,
    )
    try:
        learner.run(stop)
    except KafkaFailed as err:
        log.error("stopping: %s", err)
        return EXIT_FAILURE
    finally:
        http.shutdown()
        reader.close()
        publisher.close()
    log.info("stopped")
    return 0


def _termination_message(message: str) -> None:
    try:
        if TERMINATION_LOG.parent.is_dir() and os.access(TERMINATION_LOG.parent, os.W_OK):
            TERMINATION_LOG.write_text(message + "\n")
    except OSError:
        pass  # not in a pod: the log line is the message


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper() if level.upper() in logging.getLevelNamesMapping() else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


if __name__ == "__main__":
    sys.exit(run())
