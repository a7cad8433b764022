"""The router's Prometheus metrics (one process, its own registry). The labelled children a
request touches are looked up once per label set and kept (prometheus_client's .labels()
builds and locks on every call)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class RouterMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.claims = Counter(
            "labelops_router_claims",
            "Claims forwarded to a campaign's worker, by campaign and outcome "
            "(leased, empty, blocked, refused, unreachable, error).",
            ["campaign", "outcome"],
            registry=self.registry,
        )
        self.refused = Counter(
            "labelops_router_claims_refused",
            "Claims the router answered itself: capacity (429), nothing to route to (204).",
            ["reason"],
            registry=self.registry,
        )
        self.upstream = Histogram(
            "labelops_router_upstream_seconds",
            "Round trip of a forwarded request to a campaign's worker.",
            ["campaign", "operation"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.relayed_batch = Histogram(
            "labelops_router_relayed_batch_submissions",
            "Submissions per batch relayed to a campaign's worker (POST /v1/relay/labels).",
            ["campaign"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )

        self._claims: dict[tuple[str, str], Any] = {}
        self._upstream: dict[tuple[str, str], Any] = {}

    def claimed(self, campaign: str, outcome: str) -> None:
        child = self._claims.get((campaign, outcome))
        if child is None:
            child = self._claims[(campaign, outcome)] = self.claims.labels(campaign, outcome)
        child.inc()

    def upstream_took(self, campaign: str, operation: str, seconds: float) -> None:
        child = self._upstream.get((campaign, operation))
        if child is None:
            child = self._upstream[(campaign, operation)] = self.upstream.labels(
                campaign, operation
            )
        child.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
