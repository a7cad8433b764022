"""The worker's campaign gauges (active leases, labelers holding them): read at scrape time at
most every max_age seconds, served beside the HTTP figures, and left out (never a false 0)
when the database cannot be read."""

from __future__ import annotations

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from labelops.store.active_leases import ActiveLeases
from labelops.worker.metrics import CampaignGauges, WorkerMetrics


class Reads:
    """What the store would answer, in turn, counting the reads."""

    def __init__(self, *answers: ActiveLeases | Exception) -> None:
        self.answers = list(answers)
        self.count = 0

    def __call__(self) -> ActiveLeases:
        self.count += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def gauges(text: bytes) -> dict[str, float]:
    return {
        family.name: family.samples[0].value
        for family in text_string_to_metric_families(text.decode())
        if family.type == "gauge" and family.samples
    }


def test_the_gauges_are_served_beside_the_http_figures() -> None:
    reads = Reads(ActiveLeases(leases=7, labelers=3))
    meter = WorkerMetrics(campaign=CampaignGauges(reads, clock=Clock()))
    meter.observe_request("/healthz", "GET", 200, 0.001)
    text = meter.exposition()
    found = gauges(text)
    assert found["labelops_worker_active_leases"] == 7
    assert found["labelops_worker_active_labelers"] == 3
    assert b"labelops_worker_http_requests_total" in text


def test_scrapes_within_max_age_share_one_read() -> None:
    clock = Clock()
    reads = Reads(ActiveLeases(2, 1), ActiveLeases(5, 2))
    campaign = CampaignGauges(reads, max_age=2.0, clock=clock)
    assert campaign.current() == ActiveLeases(2, 1)
    clock.now += 1.9
    assert campaign.current() == ActiveLeases(2, 1)
    assert reads.count == 1
    clock.now += 0.1
    assert campaign.current() == ActiveLeases(5, 2)
    assert reads.count == 2


def test_a_failed_read_leaves_the_gauges_out_and_the_next_scrape_reads_again() -> None:
    clock = Clock()
    reads = Reads(
        ActiveLeases(4, 2), psycopg.OperationalError("connection refused"), ActiveLeases(1, 1)
    )
    meter = WorkerMetrics(campaign=CampaignGauges(reads, max_age=2.0, clock=clock))
    assert gauges(meter.exposition())["labelops_worker_active_leases"] == 4
    clock.now += 2.0
    text = meter.exposition()
    assert b"labelops_worker_active_leases" not in text, "a failed read must not report 0"
    assert b"labelops_worker_http_request_duration_seconds" in text
    # Not cached: the very next scrape asks the database again.
    assert gauges(meter.exposition())["labelops_worker_active_leases"] == 1
    assert reads.count == 3


def test_without_campaign_gauges_nothing_is_read_or_served() -> None:
    text = WorkerMetrics().exposition()
    assert b"labelops_worker_active_leases" not in text
