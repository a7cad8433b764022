"""Everything handlers share for the life of the operator process: settings, clients, the
status writer, per-campaign locks and the in-memory progress trackers.

Built once by main.run() and handed to every handler through kopf's memo, so tests can
build one against any backends. The one process-wide state outside it is the Prometheus
metrics (operator/metrics.py): they live in prometheus_client's default registry, the way
that library is meant to be used, and a deleted campaign's series are removed with it.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import time
from dataclasses import dataclass, field

from labelops.clients.kafka import KafkaAdmin
from labelops.clients.kube import KubeClient
from labelops.clients.postgres import PostgresAdmin
from labelops.operator.blocks import BlockWatermark
from labelops.operator.plan import CampaignRef, PostgresEndpoint, WorkerEnvironment
from labelops.operator.progress_interval import ReadSchedule
from labelops.operator.progress_math import RateWindow
from labelops.operator.settings import OperatorSettings
from labelops.operator.status_writer import StatusWriter


@dataclass
class ProgressTracker:
    window: RateWindow = field(default_factory=RateWindow)
    schedule: ReadSchedule = field(default_factory=ReadSchedule)
    last_written: dt.datetime | None = None
    # The last labeler block posted as an Event (see blocks.py); in memory only.
    blocks: BlockWatermark = field(default_factory=BlockWatermark)


# Reconcile passes (and reclaims) running at once. Each holds a database connection for
# part of its run and several client threads: a thousand campaigns applied together would
# otherwise all wait on the admin pool at once, and those waiting longer than its timeout
# would be reported as PostgresUnavailable and retried with backoff, though nothing is down.
MAX_CONCURRENT_PASSES = 16


@dataclass
class OperatorContext:
    settings: OperatorSettings
    kube: KubeClient
    kafka: KafkaAdmin
    postgres: PostgresAdmin
    status: StatusWriter
    workers: WorkerEnvironment
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _trackers: dict[str, ProgressTracker] = field(default_factory=dict)
    # When each campaign's last reconcile pass ended (time.monotonic), for resync.py.
    _passes_done: dict[str, float] = field(default_factory=dict)
    passes: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_PASSES)
    )
    # The context of a Kopf resource handler (handlers/campaign_watch.py keeps the first):
    # work the operator starts outside Kopf's handlers (the progress loop's reads) runs in a
    # copy of it, where Kopf's event queue is known, so kopf.event can post their Events.
    handler_context: contextvars.Context | None = None

    @classmethod
    def create(cls, settings: OperatorSettings) -> OperatorContext:
        kube = KubeClient.from_environment()
        return cls(
            settings=settings,
            kube=kube,
            kafka=KafkaAdmin(settings.kafka_connection, timeout=settings.kafka_timeout_seconds),
            postgres=PostgresAdmin(
                settings.postgres_dsn, timeout=settings.postgres_timeout_seconds
            ),
            status=StatusWriter(kube),
            workers=WorkerEnvironment(
                default_image=settings.worker_image,
                kafka_bootstrap=settings.kafka_bootstrap_for_workers,
                kafka_access=settings.campaign_kafka_access,
                postgres=PostgresEndpoint.from_admin_dsn(
                    settings.postgres_dsn,
                    settings.worker_postgres_host,
                    settings.postgres_sslmode,
                    settings.postgres_ca_pem,
                ),
                image_allowlist=settings.worker_image_allowlist,
                network_policy_peers=(
                    settings.network_policy_peers if settings.network_policies else None
                ),
            ),
        )

    def lock(self, ref: CampaignRef) -> asyncio.Lock:
        """Serialises reconcile passes and reclaim of one campaign (handlers and timers)."""
        return self._locks.setdefault(ref.names.key, asyncio.Lock())

    def tracker(self, ref: CampaignRef) -> ProgressTracker:
        return self._trackers.setdefault(ref.names.key, ProgressTracker())

    def schedules(self) -> dict[str, ReadSchedule]:
        """Each tracked campaign's progress read schedule, by campaign key."""
        return {key: tracker.schedule for key, tracker in self._trackers.items()}

    def pass_done(self, ref: CampaignRef) -> None:
        self._passes_done[ref.names.key] = time.monotonic()

    def since_last_pass(self, ref: CampaignRef) -> float | None:
        done = self._passes_done.get(ref.names.key)
        return None if done is None else time.monotonic() - done

    def forget(self, ref: CampaignRef) -> None:
        """Drop in-memory state of a campaign that is gone."""
        self._locks.pop(ref.names.key, None)
        self._passes_done.pop(ref.names.key, None)
        self._trackers.pop(ref.names.key, None)
        self.status.forget(ref.namespace, ref.name)

    def close(self) -> None:
        self.postgres.close()
        self.kube.close()
