"""Metrics declared as tables of specs: every declared attribute is made, of its kind, and
exposed under its component's prefix."""

from prometheus_client import Counter, Gauge, Info, generate_latest

from labelops.learner.metrics import _METRICS, LearnerMetrics
from labelops.worker.metrics import _COUNTERS, WorkerMetrics

KINDS = {"Gauge": Gauge, "Counter": Counter, "Info": Info}


def test_each_declared_learner_metric_is_made_of_its_declared_kind() -> None:
    metrics = LearnerMetrics()
    declared = dict(LearnerMetrics.__annotations__)
    assert set(declared) == set(_METRICS), "LearnerMetrics' attributes and _METRICS differ"
    for attribute, kind in declared.items():
        assert isinstance(getattr(metrics, attribute), KINDS[str(kind)]), attribute


def test_each_declared_worker_counter_is_made() -> None:
    metrics = WorkerMetrics()
    declared = {a for a, kind in WorkerMetrics.__annotations__.items() if str(kind) == "Counter"}
    assert declared == set(_COUNTERS), "WorkerMetrics' Counter attributes and _COUNTERS differ"
    for attribute in declared:
        assert isinstance(getattr(metrics, attribute), Counter), attribute


def exposed_names(text: bytes) -> list[str]:
    return [line.split()[2] for line in text.decode().splitlines() if line.startswith("# TYPE")]


def test_metrics_are_exposed_under_their_component_prefix() -> None:
    learner = exposed_names(generate_latest(LearnerMetrics().registry))
    assert learner and all(n.startswith("labelops_learner_") for n in learner), learner
    assert "labelops_learner_trainings_total" in learner
    worker = exposed_names(generate_latest(WorkerMetrics().registry))
    assert worker and all(n.startswith("labelops_worker_") for n in worker), worker
    assert "labelops_worker_openapi_response_violations_total" in worker
