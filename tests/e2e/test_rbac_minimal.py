"""Least privilege, proven on the real API server: the operator's rules (operator/rbac.py) are
enough, and every verb in them is needed.

The local stack's API server authorizes with RBAC and runs OwnerReferencesPermissionEnforcement
(devstack/kube.py). The operator runs as a ServiceAccount (a TokenRequest token in its own
kubeconfig) holding nothing but a Role in the one namespace it serves: the chart's namespaced
install (`watchNamespaces`). It takes a campaign through its whole life: provisioned to Ready
with a quota and a learner; moved into a LabelerPool (tokens pool), so the operator writes the
pool's router objects (owned by the pool) and status and the campaign reads the pool; quota
and learner dropped from the spec, so the operator deletes them; the campaign deleted under
reclaimPolicy Delete, so the operator deletes the workers, topics and schema and lets the
campaign go.

With all of RULES that life completes with no refusal in the operator's log. Then, once per
granted verb, the same life under RULES minus that verb: the API server must refuse a call
(the refusal is in the log, naming the verb and resource where it can) or a step must not
complete. A verb whose removal changes nothing fails its test: drop it from rbac.py, or give
the life a step that needs it.

The runs are independent (a namespace, Role, operator and campaign each), so they run a few
at a time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from test_operator_harness import (
    DENIED_MARKERS,
    Operator,
    apply,
    campaign_documents,
    delete_campaign,
    delete_namespace,
    drop_campaign_data,
    get_campaign,
    get_object,
    install_crd,
    is_ready,
    new_namespace,
    patch_spec,
    service_account_kubeconfig,
)

from devstack import kubeapply
from labelops.api.campaign import GROUP, PLURAL, VERSION
from labelops.api.labeler_pool import KIND as POOL_KIND
from labelops.api.labeler_pool import PLURAL as POOL_PLURAL
from labelops.api.naming import CampaignNames
from labelops.operator import plan, rbac

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

CAMPAIGN = "least"
ACCOUNT = "labelops-operator"
PARALLEL = 4
POOL = "least-pool"
STEP_TIMEOUT = {
    "Ready": 150.0,
    "pooled": 120.0,
    "hpa": 90.0,
    "keda": 90.0,
    "dropped": 90.0,
    "reclaimed": 90.0,
}
# The autoscalers the life makes the operator write (KEDA's CRDs are stand-ins installed from
# tests/fixtures/keda-crds.yaml: mode keda needs them served).
KEDA_CRDS = Path(__file__).resolve().parents[1] / "fixtures" / "keda-crds.yaml"
HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")
SCALED_OBJECT = ("keda.sh/v1alpha1", "ScaledObject")
TRIGGER_AUTHENTICATION = ("keda.sh/v1alpha1", "TriggerAuthentication")
VERBS = sorted(
    (group, resource, verb) for (group, resource), verbs in rbac.granted().items() for verb in verbs
)


@dataclass
class Life:
    """What one run of the campaign's life got to, and what the API server refused."""

    completed: list[str] = field(default_factory=list)
    stuck_at: str | None = None
    denials: list[str] = field(default_factory=list)
    log_tail: str = ""

    def summary(self) -> str:
        stuck = f", stuck at {self.stuck_at}" if self.stuck_at else ""
        refused = "\n  ".join(self.denials[:3]) or "(none)"
        return f"completed {self.completed}{stuck}; refusals:\n  {refused}"


def grant(api: client.ApiClient, namespace: str, rules: tuple[rbac.Rule, ...]) -> None:
    """A ServiceAccount bound to a Role holding exactly these rules in the namespace."""
    rbac_api = "rbac.authorization.k8s.io/v1"
    meta = {"name": ACCOUNT, "namespace": namespace}
    apply(
        api,
        [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
            {
                "apiVersion": rbac_api,
                "kind": "Role",
                "metadata": meta,
                "rules": rbac.policy_rules(rules),
            },
            {
                "apiVersion": rbac_api,
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": {"apiGroup": rbac_api.split("/")[0], "kind": "Role", "name": ACCOUNT},
                "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
            },
        ],
    )


def lifecycle_steps(
    api: client.ApiClient, namespace: str
) -> list[tuple[str, Callable[[], Any], Callable[[], bool]]]:
    """(step, action, done) in order; done() is polled until true."""
    names = CampaignNames(namespace, CAMPAIGN)
    ref_learner = plan.learner_name(plan.CampaignRef(namespace, CAMPAIGN, "", 1))
    generation: dict[str, int] = {}

    def provision() -> None:
        apply(
            api,
            campaign_documents(
                namespace,
                CAMPAIGN,
                **{"quotas.kubernetes": {"pods": 20}, "reclaimPolicy": "Delete"},
            ),
        )

    def join_pool() -> None:
        secret, _ = campaign_documents(namespace, POOL)
        secret["metadata"]["labels"] = {"labelops.dev/pool": POOL}
        apply(
            api,
            [
                secret,
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": POOL_KIND,
                    "metadata": {"name": POOL, "namespace": namespace},
                    "spec": {
                        "identity": {"tokens": {"secretRef": {"name": secret["metadata"]["name"]}}}
                    },
                },
            ],
        )
        generation["pool"] = patch_spec(
            api,
            namespace,
            CAMPAIGN,
            {"labelers": {"tokenSecretRef": None, "poolRef": {"name": POOL}}},
        )

    def pooled() -> bool:
        live = get_campaign(api, namespace, CAMPAIGN) or {}
        if (live.get("status") or {}).get("observedGeneration") != generation["pool"]:
            return False
        if not is_ready(live):
            return False
        pool = get_object(api, f"{GROUP}/{VERSION}", POOL_KIND, namespace, POOL) or {}
        listed = [c.get("name") for c in (pool.get("status") or {}).get("campaigns") or []]
        router = get_object(api, "v1", "ConfigMap", namespace, f"{POOL}-router")
        return listed == [CAMPAIGN] and router is not None

    def observed(key: str) -> bool:
        live = get_campaign(api, namespace, CAMPAIGN) or {}
        return (live.get("status") or {}).get("observedGeneration") == generation[key]

    def autoscale(mode: str) -> Callable[[], None]:
        def action() -> None:
            generation[mode] = patch_spec(
                api,
                namespace,
                CAMPAIGN,
                {"workers": {"autoscaling": {"mode": mode, "minReplicas": 1, "maxReplicas": 2}}},
            )

        return action

    def hpa_written() -> bool:
        return observed("hpa") and get_object(api, *HPA, namespace, names.worker) is not None

    def keda_written() -> bool:
        return (
            observed("keda")
            and get_object(api, *SCALED_OBJECT, namespace, names.worker) is not None
            and get_object(api, *TRIGGER_AUTHENTICATION, namespace, names.kafka_secret) is not None
            and get_object(api, *HPA, namespace, names.worker) is None
        )

    def drop() -> None:
        generation["spec"] = patch_spec(
            api,
            namespace,
            CAMPAIGN,
            {"quotas": {"kubernetes": None}, "model": None, "workers": {"autoscaling": None}},
        )

    def dropped() -> bool:
        return (
            observed("spec")
            and get_object(api, "v1", "ResourceQuota", namespace, names.resource_quota) is None
            and get_object(api, "apps/v1", "Deployment", namespace, ref_learner) is None
            and get_object(api, *SCALED_OBJECT, namespace, names.worker) is None
            and get_object(api, *TRIGGER_AUTHENTICATION, namespace, names.kafka_secret) is None
        )

    return [
        ("Ready", provision, lambda: is_ready(get_campaign(api, namespace, CAMPAIGN))),
        ("pooled", join_pool, pooled),
        ("hpa", autoscale("hpa"), hpa_written),
        ("keda", autoscale("keda"), keda_written),
        ("dropped", drop, dropped),
        (
            "reclaimed",
            lambda: delete_campaign(api, namespace, CAMPAIGN),
            lambda: get_campaign(api, namespace, CAMPAIGN) is None,
        ),
    ]


def refusals(operator: Operator) -> list[str]:
    if operator.started is None or not operator.started.log.exists():
        return []
    log = operator.started.log.read_text(errors="replace")
    return [line for line in log.splitlines() if any(m in line for m in DENIED_MARKERS)]


def live_through(
    api: client.ApiClient,
    stack_env: dict[str, str],
    rules: tuple[rbac.Rule, ...],
    label: str,
    state_dir: Path,
) -> Life:
    """One campaign's life under these rules; stops at the first refusal."""
    namespace = new_namespace(api, f"rbac-{label}")
    life = Life()
    operator: Operator | None = None
    try:
        grant(api, namespace, rules)
        kubeconfig = service_account_kubeconfig(
            api, stack_env["KUBECONFIG"], namespace, ACCOUNT, state_dir / "kubeconfig"
        )
        operator = Operator(state_dir, {"KUBECONFIG": str(kubeconfig)}, namespace)
        operator.start()
        for step, action, done in lifecycle_steps(api, namespace):
            action()
            deadline = time.monotonic() + STEP_TIMEOUT[step]
            while not done():
                life.denials = refusals(operator)
                if life.denials or time.monotonic() > deadline:
                    life.stuck_at = step
                    return life
                time.sleep(0.5)  # polling the API server for the step's condition
            life.completed.append(step)
        life.denials = refusals(operator)
        return life
    finally:
        if operator is not None:
            life.log_tail = operator.log()
            operator.stop()
        clean_up(api, stack_env, namespace)


def clean_up(api: client.ApiClient, stack_env: dict[str, str], namespace: str) -> None:
    """What a refused life left behind: the finalizer (nobody is left to remove it), the
    topics, the schema and role, then the namespace."""
    custom = client.CustomObjectsApi(api)
    if get_campaign(api, namespace, CAMPAIGN) is not None:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, CAMPAIGN, {"metadata": {"finalizers": None}}
        )
        delete_campaign(api, namespace, CAMPAIGN)
    pool = get_object(api, f"{GROUP}/{VERSION}", POOL_KIND, namespace, POOL)
    if pool is not None and pool["metadata"].get("finalizers"):
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, POOL_PLURAL, POOL, {"metadata": {"finalizers": None}}
        )
    names = CampaignNames(namespace, CAMPAIGN)
    drop_campaign_data(
        stack_env["LABELOPS_KAFKA_BOOTSTRAP"],
        stack_env["LABELOPS_POSTGRES_DSN"],
        names.schema,
        list(names.topics().values()),
    )
    delete_namespace(api, namespace)


def _label(group: str, resource: str, verb: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{verb}-{resource}-{group}".lower()).strip("-")[:40]


def _selected_verbs(session: pytest.Session) -> list[tuple[str, str, str]]:
    """The verbs of this module's selected tests (`-k` runs only their lives)."""
    selected = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        module = getattr(item, "module", None)
        if module is not None and module.__name__ == __name__ and callspec:
            params = callspec.params
            selected.append((params["group"], params["resource"], params["verb"]))
    return selected


@pytest.fixture(scope="module")
def lives(
    request: pytest.FixtureRequest,
    kube_api: client.ApiClient,
    stack_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[tuple[str, str, str] | None, Life]]:
    """None: the life under all of RULES; (group, resource, verb): under RULES without it."""
    install_crd(kube_api)
    keda = kubeapply.load_documents(KEDA_CRDS)
    kubeapply.apply(kube_api, keda)
    for crd in keda:
        kubeapply.wait_crd_established(kube_api, crd["metadata"]["name"])
    runs: dict[tuple[str, str, str] | None, tuple[rbac.Rule, ...]] = {None: rbac.RULES}
    runs.update({v: rbac.without(*v) for v in _selected_verbs(request.session)})

    labels = {key: "all" if key is None else _label(*key) for key in runs}
    # Made here, not in the threads: tmp_path_factory is not thread-safe.
    states = {key: tmp_path_factory.mktemp(f"rbac-{label}") for key, label in labels.items()}

    def one(key: tuple[str, str, str] | None) -> Life:
        return live_through(kube_api, stack_env, runs[key], labels[key], states[key])

    with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="rbac-life") as pool:
        yield dict(zip(runs, pool.map(one, runs), strict=True))


def test_the_rules_are_enough_for_a_whole_campaign_life(
    lives: dict[tuple[str, str, str] | None, Life],
) -> None:
    life = lives[None]
    assert life.completed == list(STEP_TIMEOUT) and life.denials == [], (
        f"{life.summary()}\noperator log:\n{life.log_tail}"
    )


@pytest.mark.parametrize(("group", "resource", "verb"), VERBS, ids=lambda v: str(v) or "core")
def test_each_verb_is_needed(
    lives: dict[tuple[str, str, str] | None, Life], group: str, resource: str, verb: str
) -> None:
    life = lives[(group, resource, verb)]
    assert life.stuck_at is not None or life.denials, (
        f"without {verb} on {resource} ({group or 'core'}) the campaign's whole life still "
        f"completed with no refusal: drop the verb from operator/rbac.py or add a step that "
        f"needs it.\n{life.summary()}"
    )
    # The refusal is the one this run provoked, not some other trouble.
    assert any(refusal_names(line, resource, verb) for line in life.denials), life.summary()


def refusal_names(line: str, resource: str, verb: str) -> bool:
    if resource.endswith("/finalizers"):  # OwnerReferencesPermissionEnforcement's wording
        return "cannot set blockOwnerDeletion" in line
    return f'cannot {verb} resource "{resource}"' in line
