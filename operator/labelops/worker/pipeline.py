"""What the worker's two loops between Kafka and the database share.

The ingest consumer (ingest.py) and the outbox relay (outbox.py) each serve one campaign
through the same pool, with the same Kafka credentials, reporting to the same metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import ConnectionPool

from labelops.api.kafka_connection import KafkaConnection
from labelops.api.worker_configmap import WorkerConfig
from labelops.worker.metrics import PipelineMetrics, pipeline_metrics


@dataclass(frozen=True)
class Pipeline:
    pool: ConnectionPool[Any]
    config: WorkerConfig
    kafka: KafkaConnection
    metrics: PipelineMetrics = field(default_factory=pipeline_metrics)
