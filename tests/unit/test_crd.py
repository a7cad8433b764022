"""The CRD in crds/ is generated from the pydantic models and must never drift from them."""

from pathlib import Path

import yaml

from labelops.api.crd import crd, crd_yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "labelingcampaigns.labelops.dev.yaml"


def test_committed_crd_matches_models() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), "crds/ is stale: run `make crds` and commit it"


def _walk(node: object, path: str = "") -> list[tuple[str, dict]]:
    found: list[tuple[str, dict]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found += _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _walk(value, f"{path}/{i}")
    return found


def test_schema_is_structural() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node, path
        assert "anyOf" not in node, path
        assert "title" not in node, path
        assert node.get("additionalProperties") is not False, path
        if "properties" in node:
            assert node.get("type") == "object", f"{path} has properties but no type object"


def test_status_subresource_printer_columns_and_short_names() -> None:
    doc = yaml.safe_load(CRD_FILE.read_text())
    version = doc["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Progress"] == ".status.progress.summary"
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert "Age" in columns
    assert set(doc["spec"]["names"]["shortNames"]) == {"lcamp", "campaign"}


def test_defaults_and_immutability_rules_are_in_the_crd() -> None:
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    props = spec["properties"]
    assert props["reclaimPolicy"]["default"] == "Retain"
    assert props["target"]["properties"]["labelsPerItem"]["default"] == 1
    assert props["kafka"]["default"] == {"partitions": 3, "replicationFactor": 1, "retention": "7d"}
    task_rules = [v["rule"] for v in props["task"]["x-kubernetes-validations"]]
    assert "self.type == oldSelf.type" in task_rules
    kafka_rules = [v["rule"] for v in props["kafka"]["x-kubernetes-validations"]]
    assert "self.replicationFactor == oldSelf.replicationFactor" in kafka_rules


def test_conditions_are_a_map_list_keyed_by_type() -> None:
    status = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]
