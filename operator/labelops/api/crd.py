"""Generate the LabelingCampaign CRD from the pydantic models.

pydantic emits JSON Schema; Kubernetes wants a structural OpenAPI v3 schema. The conversion
inlines references, turns Optional[X] into a non-required X, maps formats, drops what
structural schemas forbid (titles, `additionalProperties: false`) and evaluates default
factories so the API server applies the same defaults the models do.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

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


def crd() -> dict[str, Any]:
    spec_schema = model_schema(CampaignSpec)
    status_schema = model_schema(CampaignStatus)
    root = {
        "type": "object",
        "required": ["spec"],
        "description": "A human-labeling campaign: what to label, how much, by whom, by when.",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
        "x-kubernetes-validations": [
            cel(
                f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
                f"metadata.name must be at most {MAX_NAME_LENGTH} characters "
                "(it prefixes the names of the worker Deployment, Service and Secrets)",
            )
        ],
    }
    ready = '.status.conditions[?(@.type=="Ready")].status'
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["labelops"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Type", "type": "string", "jsonPath": ".spec.task.type"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {
                            "name": "Progress",
                            "type": "string",
                            "jsonPath": ".status.progress.summary",
                        },
                        {"name": "Ready", "type": "string", "jsonPath": ready},
                        {
                            "name": "Deadline",
                            "type": "date",
                            "jsonPath": ".spec.deadline",
                            "priority": 1,
                        },
                        {
                            "name": "Machine",
                            "type": "string",
                            "description": "Share of completed items labeled by models.",
                            "jsonPath": ".status.model.machineShare",
                            "priority": 1,
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated from operator/labelops/api/campaign.py by `make crds`. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)


if __name__ == "__main__":
    print(crd_yaml(), end="")
