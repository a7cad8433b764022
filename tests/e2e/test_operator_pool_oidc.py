"""An OIDC LabelerPool end to end: the real API server, operator, PostgreSQL and Kafka, an
identity provider on loopback (tests/oidc_issuer.py: https with a certificate made here, an
RSA key generated here), and the router and workers run from the Deployments the operator
wrote (devstack/podrunner.py, the router reaching the workers' Service URLs mapped locally).

- one JWT per labeler, signed once: anna (group `doctors`, hence skill `medical`) claims and
  labels through the router and directly at the skilled campaign's worker with the same token
  (identity everywhere); bob (no `medical`) is routed only to the other campaign and refused
  by the skilled campaign's worker;
- an expired JWT and one for another audience are refused with 401 and the reason, by the
  router and the worker alike;
- the labels stored in each campaign's schema are exactly those submitted, each under the
  token's username claim;
- with the operator's `api` peers restricting who may call workers, each member's worker
  NetworkPolicy still admits the pool's router: its podSelector selects exactly the live
  pods of the router Deployment (kwok's), on the API port.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client
from psycopg import sql
from test_campaign_network_policy import pods as pods_labeled
from test_campaign_network_policy import policy
from test_operator_harness import (
    Operator,
    apply,
    crd_namespace,
    delete_campaign,
    get_object,
    patch_spec,
    poll,
    running_operator,
    wait_campaign,
    wait_ready,
)
from test_operator_pool import get_campaign_body, pool_campaign, produce_items, router_config

from devstack import podrunner
from labelops.api.campaign import GROUP, VERSION
from labelops.api.labeler_pool import KIND
from labelops.api.naming import CampaignNames
from labelops.api.pool_router import split_task_id
from labelops.api.worker_configmap import WORKER_PORT
from oidc_issuer import (
    AUDIENCE,
    Issuer,
    claims,
    loopback_certificate,
    published,
    rsa_key,
    serving_issuer,
    sign,
)

pytestmark = pytest.mark.e2e

POOL = "experts"  # pool_campaign (test_operator_pool) joins campaigns to this pool
ROUTER = f"{POOL}-router"
SKILLED_CAMPAIGN = "med"  # requires `medical`
OTHER_CAMPAIGN = "gen"
CAMPAIGNS = (SKILLED_CAMPAIGN, OTHER_CAMPAIGN)
ANNA = "anna@example.com"  # in group `doctors`: skill `medical`
BOB = "bob@example.com"  # no group that gives `medical`
KID = "e2e-key"
PAIRWISE = {"preferred": "a"}
INGRESS = {"podSelector": {"matchLabels": {"app": "labeling-ingress"}}}
PEERS = {"api": [INGRESS]}  # only the ingress may call workers: and the pool's router


@pytest.fixture(scope="module")
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    with crd_namespace(kube_api, "e2e-pool-oidc") as name:
        yield name


@pytest.fixture(scope="module")
def operator(
    kube_api: client.ApiClient,
    stack_env: dict[str, str],
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    state = tmp_path_factory.mktemp("operator")
    peers = {"LABELOPS_NETWORK_POLICY_PEERS": json.dumps(PEERS)}
    with running_operator(state, stack_env, namespace, **peers) as op:
        yield op
        for name in CAMPAIGNS:
            if get_campaign_body(kube_api, namespace, name) is not None:
                patch_spec(kube_api, namespace, name, {"reclaimPolicy": "Delete"})
                delete_campaign(kube_api, namespace, name)
                wait_campaign(kube_api, namespace, name, lambda o: o is None, "deleted", 120, op)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return loopback_certificate(tmp_path_factory.mktemp("issuer"))


@pytest.fixture(scope="module")
def issuer(tls: tuple[Path, Path]) -> Iterator[Issuer]:
    # https: a LabelerPool's issuer must be an https URL (its CRD's pattern).
    with serving_issuer(tls) as state:
        yield state


@pytest.fixture(scope="module")
def signing_key(issuer: Issuer) -> rsa.RSAPrivateKey:
    key = rsa_key()
    issuer.keys.append(published(key, KID))
    return key


def oidc_pool(namespace: str, issuer: Issuer) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": POOL, "namespace": namespace},
        "spec": {
            "identity": {
                "oidc": {
                    "issuer": issuer.url,
                    "audience": AUDIENCE,
                    "usernameClaim": "email",
                    "groupsClaim": "groups",
                }
            },
            "skills": [{"name": "medical", "groups": ["doctors"]}],
        },
    }


def member(namespace: str, name: str, pool_ref: dict[str, Any]) -> dict[str, Any]:
    """A pool campaign with one label per item and no gold or overlap rules: every item one
    labeler labels is done, so who labeled what is exact."""
    campaign = pool_campaign(namespace, name, pool_ref)
    campaign["spec"]["target"]["labelsPerItem"] = 1
    campaign["spec"].pop("quality", None)
    return campaign


def call(
    url: str, token: str, method: str = "GET", document: Any = None
) -> tuple[int, dict[str, Any]]:
    data = None if document is None else json.dumps(document).encode()
    headers = {"Authorization": f"Bearer {token}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=15) as reply:
            body = reply.read()
            return int(reply.status), json.loads(body) if body else {}
    except urllib.error.HTTPError as err:
        body = err.read()
        try:
            return err.code, json.loads(body) if body else {}
        except ValueError:
            return err.code, {"raw": body.decode(errors="replace")}


def label_all(base: str, token: str, limit: int = 20) -> list[str]:
    """Claim and label until no work is left for this token (204); the task ids labeled."""
    done: list[str] = []
    for _ in range(limit):
        status, task = call(f"{base}/v1/tasks/claim", token, "POST")
        if status == 204:
            return done
        assert status == 200, f"claim at {base}: {status} {task}"
        task_id = str(task["id"])
        status, body = call(
            f"{base}/v1/tasks/{quote(task_id, safe='')}/labels",
            token,
            "POST",
            {"value": PAIRWISE},
        )
        assert status == 201, f"label {task_id} at {base}: {status} {body}"
        done.append(task_id)
    raise AssertionError(f"more than {limit} tasks at {base}: {done}")


def stored_labels(dsn: str, namespace: str, campaign: str) -> set[tuple[str, str]]:
    schema = CampaignNames(namespace, campaign).schema
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT i.external_id, l.labeler FROM {} l JOIN {} i ON i.id = l.item_id"
            ).format(sql.Identifier(schema, "labels"), sql.Identifier(schema, "items"))
        ).fetchall()
    return {(str(item), str(labeler)) for item, labeler in rows}


def refused_with(status_body: tuple[int, dict[str, Any]], reason: str, where: str) -> None:
    status, body = status_body
    assert status == 401, f"{where}: {status} {body}"
    assert body.get("reason") == reason, f"{where}: {body}"


def test_one_sign_in_through_the_router_and_at_the_worker(
    kube_api: client.ApiClient,
    namespace: str,
    operator: Operator,
    kafka_bootstrap: str,
    postgres_dsn: str,
    issuer: Issuer,
    signing_key: rsa.RSAPrivateKey,
    tls: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    apply(kube_api, [oidc_pool(namespace, issuer)])
    apply(
        kube_api,
        [
            member(namespace, SKILLED_CAMPAIGN, {"requiredSkills": ["medical"]}),
            member(namespace, OTHER_CAMPAIGN, {}),
        ],
    )
    both = sorted(CAMPAIGNS)

    def members_routed() -> bool:
        config = router_config(kube_api, namespace)
        return config is not None and sorted(c.name for c in config.campaigns) == both

    poll(members_routed, f"router config lists {both}", 90, operator.log)
    for name in CAMPAIGNS:
        wait_ready(kube_api, namespace, name, timeout=240, operator=operator)

    # Signed once, used everywhere.
    anna = sign(claims(issuer, email=ANNA, groups=["doctors"]), signing_key, kid=KID)
    bob = sign(claims(issuer, email=BOB, sub="u-456", groups=["nurses"]), signing_key, kid=KID)
    expired = sign(
        claims(issuer, email=ANNA, groups=["doctors"], exp=int(time.time()) - 600),
        signing_key,
        kid=KID,
    )
    elsewhere = sign(
        claims(issuer, email=ANNA, groups=["doctors"], aud="another-app"), signing_key, kid=KID
    )

    items = {
        SKILLED_CAMPAIGN: [f"{SKILLED_CAMPAIGN}-{i}" for i in range(3)],
        OTHER_CAMPAIGN: [f"{OTHER_CAMPAIGN}-{i}" for i in range(2)],
    }
    trust = {"SSL_CERT_FILE": str(tls[0])}  # the pods trust the loopback issuer's certificate
    pods: dict[str, podrunner.LocalPod] = {}
    router_pods: list[podrunner.LocalPod] = []
    try:
        for name in CAMPAIGNS:
            (pods[name],) = podrunner.start_pods(
                kube_api, namespace, f"{name}-worker", tmp_path, extra_env=trust
            )
        for name in CAMPAIGNS:
            pods[name].wait_ready(timeout=120)
            topic = CampaignNames(namespace, name).items_topic
            produce_items(kafka_bootstrap, topic, items[name])
        config = router_config(kube_api, namespace)
        assert config is not None
        (router,) = router_pods = podrunner.start_pods(
            kube_api,
            namespace,
            ROUTER,
            tmp_path,
            replicas=1,
            extra_env=trust,
            port_env=podrunner.ROUTER_PORT_ENV,
            service_urls={c.url: pods[c.name].url for c in config.campaigns},
        )
        router.wait_ready(timeout=60)
        worker = pods[SKILLED_CAMPAIGN]

        def all_ingested() -> bool:
            """Both workers offer anna a task (the items reached their schemas)."""
            return all(
                call(f"{pods[n].url}/v1/me", anna)[0] == 200
                and len(stored_items(postgres_dsn, namespace, n)) == len(items[n])
                for n in CAMPAIGNS
            )

        poll(all_ingested, "items ingested by both workers", 120)

        # Refusals with their reason, by the router and the worker alike.
        for base, where in ((router.url, "router"), (worker.url, "worker")):
            refused_with(call(f"{base}/v1/tasks/claim", expired, "POST"), "expired", where)
            refused_with(call(f"{base}/v1/tasks/claim", elsewhere, "POST"), "wrong-audience", where)

        # Identity everywhere: anna's token, straight to the skilled campaign's worker.
        status, me = call(f"{worker.url}/v1/me", anna)
        assert status == 200 and me["labeler"] == ANNA, (status, me)
        direct: list[str] = []
        status, task = call(f"{worker.url}/v1/tasks/claim", anna, "POST")
        assert status == 200, (status, task)
        direct.append(str(task["id"]))
        status, body = call(
            f"{worker.url}/v1/tasks/{quote(direct[0], safe='')}/labels",
            anna,
            "POST",
            {"value": PAIRWISE},
        )
        assert status == 201, (status, body)

        # bob has no `medical`: the worker refuses him, the router never sends him there.
        status, body = call(f"{worker.url}/v1/tasks/claim", bob, "POST")
        assert status == 403 and body.get("missingSkills") == ["medical"], (status, body)
        bobs = [split_task_id(t) for t in label_all(router.url, bob)]
        assert bobs and all(s is not None and s[0] == OTHER_CAMPAIGN for s in bobs), bobs

        # anna through the router: what is left, all of it from the skilled campaign.
        annas = [split_task_id(t) for t in label_all(router.url, anna)]
        assert annas and all(s is not None and s[0] == SKILLED_CAMPAIGN for s in annas), annas
        status, me = call(f"{router.url}/v1/me", anna)
        assert status == 200, (status, me)
    finally:
        podrunner.stop_pods(router_pods, tmp_path)
        podrunner.stop_pods(list(pods.values()), tmp_path)

    # The labels in the campaigns' schemas: exactly those submitted, under the username claim.
    expected_med = {(item, ANNA) for item in direct} | {
        (s[1], ANNA) for s in annas if s is not None
    }
    expected_gen = {(s[1], BOB) for s in bobs if s is not None}
    assert stored_labels(postgres_dsn, namespace, SKILLED_CAMPAIGN) == expected_med
    assert {item for item, _ in expected_med} == set(items[SKILLED_CAMPAIGN])
    assert stored_labels(postgres_dsn, namespace, OTHER_CAMPAIGN) == expected_gen
    assert {item for item, _ in expected_gen} == set(items[OTHER_CAMPAIGN])


def stored_items(dsn: str, namespace: str, campaign: str) -> list[str]:
    schema = CampaignNames(namespace, campaign).schema
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL("SELECT external_id FROM {}").format(sql.Identifier(schema, "items"))
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_restricted_worker_callers_still_admit_the_pool_s_router(
    kube_api: client.ApiClient, namespace: str, operator: Operator
) -> None:
    """Runs after the test above (its pool and campaigns): the policies on the API server."""
    deployment = get_object(kube_api, "apps/v1", "Deployment", namespace, ROUTER)
    assert deployment is not None, f"Deployment {ROUTER} missing"
    template_labels = dict(deployment["spec"]["template"]["metadata"]["labels"])
    router_selector = dict(deployment["spec"]["selector"]["matchLabels"])

    def router_pods() -> list[Any]:
        return pods_labeled(kube_api, namespace, router_selector)

    poll(lambda: bool(router_pods()), "the router Deployment's pods (kwok)", 90, operator.log)
    router_names = sorted(p.metadata.name for p in router_pods())
    for name in CAMPAIGNS:
        spec = policy(kube_api, namespace, f"{name}-worker")["spec"]
        [ingress] = spec["ingress"]
        assert ingress["ports"] == [{"port": WORKER_PORT, "protocol": "TCP"}]
        callers = ingress["from"]
        assert callers[0] == INGRESS, callers
        routers = [c for c in callers if c != INGRESS]
        assert len(routers) == 1 and set(routers[0]) == {"podSelector"}, callers
        selector = routers[0]["podSelector"]["matchLabels"]
        assert selector.items() <= template_labels.items(), (selector, template_labels)
        selected = sorted(p.metadata.name for p in pods_labeled(kube_api, namespace, selector))
        assert selected == router_names, f"{name}: {selected} != the router's {router_names}"
