"""The Kubernetes permissions the operator needs, as data: the one list the Helm chart's
ClusterRole (charts/labelops/templates/rbac.yaml) must grant, no more and no less.

tests/tools/test_chart_render.py renders the chart and compares its ClusterRole with
RULES; tests/e2e/test_chart.py runs the operator under that ClusterRole against the real API
server, so a missing verb surfaces there as a 403.

Server-side apply is a PATCH that creates a missing object, hence create next to patch.
finalizers/update is only checked where the OwnerReferencesPermissionEnforcement admission
plugin is on (not in the local stack), but such clusters refuse blockOwnerDeletion without
it. Kopf peering is off (standalone), so no peering resources. Namespaced mode
(`--namespace`) can use a Role with the same rules; it additionally wants namespaces
list/watch (Kopf discovers the namespace by watching; without it Kopf assumes the namespace
exists and logs a warning).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: frozenset[str]
    why: str


APPLIED = frozenset({"get", "create", "patch"})

RULES: tuple[Rule, ...] = (
    Rule(
        ("apiextensions.k8s.io",),
        ("customresourcedefinitions",),
        frozenset({"list", "watch"}),
        "Kopf notices the CRD being (re)installed without an operator restart",
    ),
    Rule(
        ("labelops.dev",),
        ("labelingcampaigns",),
        frozenset({"get", "list", "watch", "patch"}),
        "Kopf watches campaigns and patches them for its finalizer and progress annotations",
    ),
    Rule(
        ("labelops.dev",),
        ("labelingcampaigns/status",),
        frozenset({"patch"}),
        "the status writer: conditions, phase, progress, observedGeneration",
    ),
    Rule(
        ("labelops.dev",),
        ("labelingcampaigns/finalizers",),
        frozenset({"update"}),
        "children carry ownerReferences with blockOwnerDeletion",
    ),
    Rule(
        ("",),
        ("secrets", "configmaps", "services"),
        APPLIED,
        "what a campaign owns, by server-side apply; secrets get also reads the labelers' "
        "tokens Secret and keeps the db Secret's password",
    ),
    Rule(
        ("",),
        ("resourcequotas",),
        APPLIED | {"delete"},
        "the campaign's quota, deleted when dropped from the spec",
    ),
    Rule(
        ("apps",),
        ("deployments",),
        APPLIED | {"list", "watch", "delete"},
        "the worker Deployment; WorkersReady follows it through a watch; deleted on reclaim",
    ),
    Rule(
        ("", "events.k8s.io"),
        ("events",),
        frozenset({"create"}),
        "Kopf posts Events on the campaign (core v1 or events.k8s.io, whichever it finds)",
    ),
)


def granted(rules: tuple[Rule, ...] = RULES) -> dict[tuple[str, str], set[str]]:
    """(api group, resource) -> verbs, the shape to compare a rendered ClusterRole with."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule.api_groups:
            for resource in rule.resources:
                verbs.setdefault((group, resource), set()).update(rule.verbs)
    return verbs
