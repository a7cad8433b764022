"""Generate the CRDs (LabelingCampaign, LabelerPool) from the pydantic models.

pydantic emits JSON Schema; Kubernetes wants a structural OpenAPI v3 schema. The conversion
inlines references, turns Optional[X] into a non-required X, maps formats, drops what
structural schemas forbid (titles, `additionalProperties: false`) and evaluates default
factories so the API server applies the same defaults the models do.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml
from pydantic import BaseModel

from labelops.api import labeler_pool
from labelops.api.campaign import (
    GROUP,
    KIND,
    MAX_NAME_LENGTH,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    CampaignSpec,
    CampaignStatus,
    cel,
)

_DROP = {"title", "$defs"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        if len(variants) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return _resolve({**variants[0], **rest}, defs)
    return {k: _resolve(v, defs) for k, v in node.items() if k not in _DROP}


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "additionalProperties" and value is False:
            continue
        if key == "default" and value is None:
            continue
        if key == "format" and value == "date-time":
            out[key] = value
            continue
        if key in ("properties",):
            out[key] = {k: _structural(v) for k, v in value.items()}
            continue
        out[key] = _structural(value)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    # JSON Schema's exclusive bounds are numbers; OpenAPI v3 (the API server's) says them
    # as minimum / maximum with a boolean flag.
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        value = out.get(flag)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[bound], out[flag] = value, True
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out = {k: v for k, v in out.items() if k in _PRESERVED_KEYS}
    return out


_PRESERVED_KEYS = {"type", "description", "x-kubernetes-preserve-unknown-fields"}


def _apply_factory_defaults(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """Give object fields built by default_factory their default, recursively."""
    props = schema.get("properties", {})
    for name, field in model.model_fields.items():
        alias = field.alias or name
        prop = props.get(alias)
        if prop is None:
            continue
        if field.default_factory is not None:
            factory = field.default_factory
            value = factory()  # type: ignore[call-arg]
            dumped = (
                value.model_dump(by_alias=True, mode="json", exclude_none=True)
                if isinstance(value, BaseModel)
                else value
            )
            if dumped not in ([], None):
                prop["default"] = dumped
        annotation = field.annotation
        for candidate in getattr(annotation, "__args__", (annotation,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                _apply_factory_defaults(candidate, prop)


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    resolved = _resolve(raw, raw.get("$defs", {}))
    _apply_factory_defaults(model, resolved)
    return dict(_structural(resolved))


def _definition(
    *,
    kind: str,
    plural: str,
    singular: str,
    short_names: list[str],
    description: str,
    spec_model: type[BaseModel],
    status_model: type[BaseModel],
    max_name_length: int,
    name_used_for: str,
    printer_columns: list[dict[str, Any]],
) -> dict[str, Any]:
    root = {
        "type": "object",
        "required": ["spec"],
        "description": description,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": model_schema(spec_model),
            "status": model_schema(status_model),
        },
        "x-kubernetes-validations": [
            cel(
                f"self.metadata.name.size() <= {max_name_length}",
                f"metadata.name must be at most {max_name_length} characters ({name_used_for})",
            )
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": short_names,
                "categories": ["labelops"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": printer_columns,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


_READY = '.status.conditions[?(@.type=="Ready")].status'
_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def crd() -> dict[str, Any]:
    return _definition(
        kind=KIND,
        plural=PLURAL,
        singular=SINGULAR,
        short_names=SHORT_NAMES,
        description="A human-labeling campaign: what to label, how much, by whom, by when.",
        spec_model=CampaignSpec,
        status_model=CampaignStatus,
        max_name_length=MAX_NAME_LENGTH,
        name_used_for="it prefixes the names of the worker Deployment, Service and Secrets",
        printer_columns=[
            {"name": "Type", "type": "string", "jsonPath": ".spec.task.type"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Progress", "type": "string", "jsonPath": ".status.progress.summary"},
            {"name": "Ready", "type": "string", "jsonPath": _READY},
            {"name": "Deadline", "type": "date", "jsonPath": ".spec.deadline", "priority": 1},
            {
                "name": "Machine",
                "type": "string",
                "description": "Share of completed items labeled by models.",
                "jsonPath": ".status.model.machineShare",
                "priority": 1,
            },
            _AGE,
        ],
    )


def labeler_pool_crd() -> dict[str, Any]:
    return _definition(
        kind=labeler_pool.KIND,
        plural=labeler_pool.PLURAL,
        singular=labeler_pool.SINGULAR,
        short_names=labeler_pool.SHORT_NAMES,
        description="A workforce shared by campaigns: how its labelers sign in, their skills, "
        "their capacity; campaigns join with spec.labelers.poolRef.",
        spec_model=labeler_pool.LabelerPoolSpec,
        status_model=labeler_pool.LabelerPoolStatus,
        max_name_length=labeler_pool.MAX_NAME_LENGTH,
        name_used_for="it prefixes the names of the router Deployment and Service",
        printer_columns=[
            {"name": "Campaigns", "type": "string", "jsonPath": ".status.campaigns[*].name"},
            {"name": "Active", "type": "integer", "jsonPath": ".status.activeLabelers"},
            {"name": "Ready", "type": "string", "jsonPath": _READY},
            {
                "name": "Issuer",
                "type": "string",
                "jsonPath": ".spec.identity.oidc.issuer",
                "priority": 1,
            },
            _AGE,
        ],
    )


def _as_yaml(definition: dict[str, Any], source: str) -> str:
    header = f"# Generated from operator/labelops/api/{source} by `make crds`. Do not edit.\n"
    return header + yaml.safe_dump(definition, sort_keys=False, width=100)


def crd_yaml() -> str:
    return _as_yaml(crd(), "campaign.py")


def labeler_pool_crd_yaml() -> str:
    return _as_yaml(labeler_pool_crd(), "labeler_pool.py")


# `python -m labelops.api.crd [PLURAL]`: the CRD of that kind (the campaign's by default).
BY_PLURAL = {PLURAL: crd_yaml, labeler_pool.PLURAL: labeler_pool_crd_yaml}

if __name__ == "__main__":
    print(BY_PLURAL[sys.argv[1] if len(sys.argv) > 1 else PLURAL](), end="")
