"""Prometheus metrics of one worker's HTTP API.

Each app gets its own registry, so several apps in one process (tests) never collide, and
routes are labelled by their template (`/v1/tasks/<path:item_id>/labels`), never by the raw
path, so item ids cannot blow up the series count.

A worker with several HTTP processes (prefork.py) starts them with PROMETHEUS_MULTIPROC_DIR
set: prometheus_client then keeps every process's values in files there, and /metrics,
whichever process answers it, sums them over all of them (counters and histograms add up),
so a scrape sees the replica's totals, as with one process.

The data path's figures (PipelineMetrics: ingest lag, outbox backlog, dead letters) are
written by the ingest consumer and the outbox relay, which run once per replica (in the
supervisor, with several HTTP processes). Their gauges are set by that one process, so
they take the "max" multiprocess mode: the one writer's value, never a sum over processes
that each hold 0. They reach a pre-forked worker's /metrics only when the supervisor itself
had PROMETHEUS_MULTIPROC_DIR set before prometheus_client was imported (values are file
backed or not from import on); until then they are absent there, never a false 0.

The campaign's figures (CampaignGauges: active leases, the labelers holding them) are read
from the database when /metrics is scraped, at most every CAMPAIGN_READ_SECONDS per process,
and served beside the others in either mode (they are no process's own values, so they are
never file backed). They count the whole campaign, not this pod: every replica reports the
same value, which is what KEDA's leases trigger needs (it reads one replica, through the
Service). A failed read leaves them out of that scrape rather than report 0.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from labelops.api.worker_metrics import ACTIVE_LABELERS_METRIC, ACTIVE_LEASES_METRIC
from labelops.store.active_leases import ActiveLeases

log = logging.getLogger("labelops.worker")

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# How stale a scrape's campaign figures may be: scrapes of several replicas, or of one by
# both Prometheus and KEDA, share one read. Well under KEDA's polling interval (30 s).
CAMPAIGN_READ_SECONDS = 2.0

# Most calls take a few milliseconds; the tail buckets catch lock waits and slow disks.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


# Topics a message can be dead-lettered from (the label of labelops_worker_dead_letters).
DEAD_LETTER_TOPICS = ("items", "predictions")


class PipelineMetrics:
    """Ingest lag, outbox backlog and dead letters: set by the ingest consumer and the relay."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.ingest_lag = Gauge(
            "labelops_worker_ingest_lag_messages",
            "Messages the ingest consumer is behind on the items and predictions topics"
            " (high watermark minus the consumer's position, summed over its partitions).",
            multiprocess_mode="max",
            registry=self.registry,
        )
        self.outbox_backlog = Gauge(
            "labelops_worker_outbox_backlog",
            "Accepted labels waiting in the outbox to be relayed to Kafka"
            " (counted up to OUTBOX_BACKLOG_COUNT_LIMIT).",
            multiprocess_mode="max",
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "labelops_worker_dead_letters",
            "Messages dead-lettered at ingest (newly recorded), by topic: items | predictions.",
            ["topic"],
            registry=self.registry,
        )
        self._dead_letter_children = {t: self.dead_letters.labels(t) for t in DEAD_LETTER_TOPICS}

    def count_dead_letters(self, topic: str, count: int) -> None:
        if topic not in self._dead_letter_children:
            raise ValueError(
                f"dead letter topic {topic!r} is not one of {', '.join(DEAD_LETTER_TOPICS)}"
            )
        if count:
            self._dead_letter_children[topic].inc(count)


_pipeline: PipelineMetrics | None = None
_pipeline_lock = threading.Lock()


def pipeline_metrics() -> PipelineMetrics:
    """The process's data path figures, made on first use: by the ingest consumer and relay,
    and a one-process worker's /metrics shows them beside the HTTP figures. Processes that
    run neither (the HTTP processes of a pre-forked worker) never make them, so their files
    in the multiprocess directory hold no 0 that would read as "no lag"."""
    global _pipeline
    with _pipeline_lock:
        if _pipeline is None:
            _pipeline = PipelineMetrics()
        return _pipeline


def _pipeline_if_made() -> PipelineMetrics | None:
    with _pipeline_lock:
        return _pipeline


class CampaignGauges(Collector):
    """labelops_worker_active_leases and _active_labelers, from `read` (the store's
    active_leases) when collected, at most every `max_age` seconds."""

    def __init__(
        self,
        read: Callable[[], ActiveLeases],
        max_age: float = CAMPAIGN_READ_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._max_age = max_age
        self._clock = clock
        self._last: ActiveLeases | None = None
        self._read_at = 0.0
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def current(self) -> ActiveLeases | None:
        """The figures, read again once older than max_age; None when the read failed (two
        scrapes at once may both read: harmless)."""
        now = self._clock()
        if self._last is not None and now - self._read_at < self._max_age:
            return self._last
        try:
            self._last, self._read_at = self._read(), now
        except psycopg.Error as err:  # PoolTimeout included
            log.warning("/metrics: active leases left out, the database read failed: %s", err)
            self._last = None
        return self._last

    def collect(self) -> Iterator[Metric]:
        figures = self.current()
        if figures is None:
            return
        yield GaugeMetricFamily(
            ACTIVE_LEASES_METRIC,
            "Unexpired leases held in the whole campaign (every replica reports the same).",
            value=figures.leases,
        )
        yield GaugeMetricFamily(
            ACTIVE_LABELERS_METRIC,
            "Labelers holding at least one unexpired lease in the campaign.",
            value=figures.labelers,
        )


# WorkerMetrics' counters: attribute: (name after "labelops_worker_", help, label names).
# prometheus_client adds the "_total" suffix.
_COUNTERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "requests": (
        "http_requests",
        "HTTP requests served, by route template, method and status code.",
        ("route", "method", "status"),
    ),
    "labels_accepted": (
        "labels_accepted",
        "Labels committed (idempotent replays are not counted again).",
        (),
    ),
    "labels_rejected": (
        "labels_rejected",
        "Label submissions refused, by reason (invalid-label, item-full, quota-exceeded...).",
        ("reason",),
    ),
    "claims": (
        "claims",
        "Claim calls, by outcome: leased, empty (nothing to label), refused (quota).",
        ("outcome",),
    ),
    "contract_violations": (
        "openapi_response_violations",
        "Responses that did not match the served OpenAPI document, by route template.",
        ("route",),
    ),
}


class WorkerMetrics:
    """The HTTP figures: a Counter per row of _COUNTERS, and the latency histogram."""

    content_type = CONTENT_TYPE_LATEST
    requests: Counter
    labels_accepted: Counter
    labels_rejected: Counter
    claims: Counter
    contract_violations: Counter

    def __init__(
        self, pipeline: PipelineMetrics | None = None, campaign: CampaignGauges | None = None
    ) -> None:
        self._pipeline = pipeline
        self._campaign = campaign
        # prometheus_client picked file-backed values at import if this was set then.
        self._multiprocess_dir = os.environ.get(MULTIPROCESS_DIR_ENV)
        self._request_counters: dict[tuple[str, str, int], Counter] = {}
        self._latency_histograms: dict[str, Histogram] = {}
        self.registry = CollectorRegistry()
        for attribute, (name, documentation, labels) in _COUNTERS.items():
            counter = Counter(
                f"labelops_worker_{name}", documentation, labels, registry=self.registry
            )
            setattr(self, attribute, counter)
        self.latency = Histogram(
            "labelops_worker_http_request_duration_seconds",
            "Time to serve an HTTP request, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        # Children are looked up once per label set: labels() takes a lock and builds a key
        # on every call, which is measurable at thousands of requests per second.
        key = (route, method, status)
        counter = self._request_counters.get(key)
        if counter is None:
            counter = self._request_counters[key] = self.requests.labels(route, method, str(status))
        histogram = self._latency_histograms.get(route)
        if histogram is None:
            histogram = self._latency_histograms[route] = self.latency.labels(route)
        counter.inc()
        histogram.observe(seconds)

    def exposition(self) -> bytes:
        campaign = generate_latest(self._campaign.registry) if self._campaign else b""
        if self._multiprocess_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self._multiprocess_dir)
            return generate_latest(registry) + campaign
        pipeline = self._pipeline or _pipeline_if_made()
        exposed = generate_latest(self.registry) + campaign
        return exposed + generate_latest(pipeline.registry) if pipeline else exposed
