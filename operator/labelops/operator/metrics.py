"""Prometheus metrics of the operator, served on LABELOPS_METRICS_PORT at /metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kopf
from prometheus_client import Counter, Histogram, start_http_server

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
