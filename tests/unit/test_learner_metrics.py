"""The learner's metrics: every declared attribute is made, of the kind it is declared as."""

from prometheus_client import Counter, Gauge, Info, generate_latest

from labelops.learner.metrics import _METRICS, LearnerMetrics

KINDS = {"Gauge": Gauge, "Counter": Counter, "Info": Info}


def test_each_declared_metric_is_made_of_its_declared_kind() -> None:
    metrics = LearnerMetrics()
    declared = {k: v for k, v in LearnerMetrics.__annotations__.items()}
    assert set(declared) == set(_METRICS), "LearnerMetrics' attributes and _METRICS differ"
    for attribute, kind in declared.items():
        assert isinstance(getattr(metrics, attribute), KINDS[str(kind)]), attribute


def test_metrics_are_exposed_under_the_learner_prefix() -> None:
    text = generate_latest(LearnerMetrics().registry).decode()
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert names and all(name.startswith("labelops_learner_") for name in names), names
    assert "labelops_learner_trainings_total" in names
