"""The Kubernetes permissions the operator needs, as data: the one list the Helm chart grants,
no more and no less, whether as one ClusterRole (cluster-wide install) or as a Role in each
watched namespace (`watchNamespaces`).

Every rule is on a namespaced resource: Kopf's cluster scanning (CRD and namespace watches)
is off (main.py), so the operator needs nothing cluster-scoped, and a namespaced install holds
no cluster-wide rights at all. The price: a CRD installed after the operator started is not
noticed, so the operator refuses to start until the CRD is served (main.run) and its
pod restarts until then.

tests/tools/test_chart_render.py renders the chart and compares its roles with RULES;
tests/e2e/test_rbac_minimal.py runs the operator under RULES against the real API server (the
local stack authorizes with RBAC) and then under RULES minus each verb in turn, showing the
API server refuse something the operator must do; tests/e2e/test_chart.py runs it under the
chart's own ServiceAccount.

Server-side apply is a PATCH that creates a missing object, and the API server checks
`create` for that, hence create next to patch. Objects only ever applied (ConfigMap,
Service, NetworkPolicy) need no `get`. finalizers/update is what clusters running the
OwnerReferencesPermissionEnforcement admission plugin require before they accept an
ownerReference with blockOwnerDeletion (the local stack runs that plugin). Kopf peering is off
(standalone), so no peering resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    api_group: str
    resource: str
    verbs: frozenset[str]
    why: str


APPLIED = frozenset({"create", "patch"})

RULES: tuple[Rule, ...] = (
    Rule(
        "labelops.dev",
        "labelingcampaigns",
        frozenset({"get", "list", "watch", "patch"}),
        "Kopf lists and watches campaigns and patches them for its finalizer and progress "
        "annotations; the status writer reads each campaign current once, then follows the "
        "watch, and again after a conflict",
    ),
    Rule(
        "labelops.dev",
        "labelingcampaigns/status",
        frozenset({"patch"}),
        "the status writer: conditions, phase, progress, observedGeneration",
    ),
    Rule(
        "labelops.dev",
        "labelingcampaigns/finalizers",
        frozenset({"update"}),
        "children carry ownerReferences with blockOwnerDeletion",
    ),
    Rule(
        "",
        "secrets",
        APPLIED | {"get", "list", "watch"},
        "the campaign's database Secret (read back to keep its password); get also reads "
        "the labelers' tokens Secret, and list/watch follow tokens Secrets (a label selector "
        "the API server applies: only those opted in for a campaign) so a rotated or removed "
        "token takes effect within seconds",
    ),
    Rule(
        "labelops.dev",
        "labelerpools",
        frozenset({"get", "list", "watch", "patch"}),
        "Kopf lists and watches LabelerPools (patching its progress annotations); a pool "
        "campaign reads its pool",
    ),
    Rule(
        "labelops.dev",
        "labelerpools/status",
        frozenset({"patch"}),
        "the pool's status: campaigns and shares, active labelers, conditions",
    ),
    Rule(
        "labelops.dev",
        "labelerpools/finalizers",
        frozenset({"update"}),
        "the router's objects carry ownerReferences with blockOwnerDeletion",
    ),
    Rule("", "configmaps", APPLIED, "the worker's configuration"),
    Rule("", "services", APPLIED, "the worker Service"),
    Rule(
        "",
        "resourcequotas",
        APPLIED | {"get", "delete"},
        "the campaign's quota; read and deleted (only ours) when dropped from the spec",
    ),
    Rule(
        "apps",
        "deployments",
        APPLIED | {"get", "list", "watch", "delete"},
        "worker and learner Deployments; WorkersReady follows them through a watch and a "
        "read; the learner's is deleted when dropped from the spec, the worker's on reclaim",
    ),
    Rule(
        "networking.k8s.io",
        "networkpolicies",
        APPLIED,
        "the campaign's worker and learner NetworkPolicies",
    ),
    Rule(
        "autoscaling",
        "horizontalpodautoscalers",
        APPLIED | {"get", "delete"},
        "spec.workers.autoscaling mode hpa: the workers' HPA; read and deleted (only ours) "
        "once the target is met, the campaign paused or autoscaling dropped",
    ),
    Rule(
        "keda.sh",
        "scaledobjects",
        APPLIED | {"get", "delete"},
        "spec.workers.autoscaling mode keda: the workers' ScaledObject; read and deleted "
        "(only ours) as the HPA is. KEDA is found through discovery, which needs no grant",
    ),
    Rule(
        "keda.sh",
        "triggerauthentications",
        APPLIED | {"get", "delete"},
        "mode keda on a SCRAM broker: KEDA reads the workers' Kafka Secret through it",
    ),
    Rule("", "events", frozenset({"create"}), "Kopf and the status writer post Events"),
)


def granted(rules: tuple[Rule, ...] = RULES) -> dict[tuple[str, str], set[str]]:
    """(api group, resource) -> verbs, the shape to compare a rendered role with."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        verbs.setdefault((rule.api_group, rule.resource), set()).update(rule.verbs)
    return verbs


def without(api_group: str, resource: str, verb: str) -> tuple[Rule, ...]:
    """RULES with one verb taken away (a rule left with no verb is dropped)."""
    rules = []
    for rule in RULES:
        if (rule.api_group, rule.resource) == (api_group, resource):
            assert verb in rule.verbs, f"{verb} {api_group}/{resource} is not granted"
            rule = Rule(rule.api_group, rule.resource, rule.verbs - {verb}, rule.why)
        if rule.verbs:
            rules.append(rule)
    return tuple(rules)


def policy_rules(rules: tuple[Rule, ...] = RULES) -> list[dict[str, Any]]:
    """The rules as a Role's or ClusterRole's `rules` field."""
    return [
        {"apiGroups": [rule.api_group], "resources": [rule.resource], "verbs": sorted(rule.verbs)}
        for rule in rules
    ]
