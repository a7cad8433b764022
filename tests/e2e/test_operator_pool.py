"""A LabelerPool on the real API server with the operator: a tokens pool and two campaigns.

- the router's ConfigMap, Secret, Deployment and Service are written, owned by the pool,
  with the members' URLs, weights and skills, a service token per member and the pool's
  labelers' digests;
- a member campaign's worker (a real process started from its Deployment by podrunner)
  accepts a labeler who has the campaign's required skill and refuses one who has not;
- the pool's status lists both campaigns with their nominal shares;
- the router Deployment (podrunner, `labelops router`) answers a skilled labeler and
  forwards a claim to the worker with its service token;
- a campaign leaving the pool drops out of the router's config and Secret;
- a campaign naming a missing pool, or a skill its pool lacks, gets WorkersReady=False
  PoolNotFound / UnknownSkill naming them.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from kubernetes import client
from test_operator_harness import (
    Operator,
    apply,
    campaign_documents,
    condition,
    crd_namespace,
    delete_campaign,
    get_object,
    patch_spec,
    poll,
    running_operator,
    wait_campaign,
    wait_ready,
)

from devstack import podrunner
from devstack.kafka import client_connection
from devstack.procs import free_port
from labelops.api.campaign import GROUP, VERSION
from labelops.api.labeler_pool import KIND, PLURAL
from labelops.api.naming import CampaignNames
from labelops.api.pool_router import (
    ENV_LABELER_DIGESTS,
    ENV_ROUTER_CONFIG,
    LABELER_DIGESTS_KEY,
    ROUTER_CONFIG_KEY,
    RouterConfig,
    split_task_id,
)
from labelops.operator.pool_plan import POOL_OPT_IN_LABEL
from labelops.store.labeler_tokens import token_digest

pytestmark = pytest.mark.e2e

POOL = "experts"
ROUTER = f"{POOL}-router"
TOKENS_SECRET = f"{POOL}-labelers"
TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789"}
SKILLED = "alice"  # has `medical`
UNSKILLED = "bob"
SKILLED_CAMPAIGN = "med"  # requires `medical`
OTHER_CAMPAIGN = "gen"
ROUTER_PORT_ENV = "LABELOPS_ROUTER_PORT"
LOST_CAMPAIGN = "lost"  # names a pool that does not exist
UNKNOWN_SKILL_CAMPAIGN = "surgery"  # requires a skill the pool lacks


@pytest.fixture(scope="module")
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    with crd_namespace(kube_api, "e2e-pool") as name:
        yield name


@pytest.fixture(scope="module")
def operator(
    kube_api: client.ApiClient,
    stack_env: dict[str, str],
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    with running_operator(tmp_path_factory.mktemp("operator"), stack_env, namespace) as op:
        yield op
        for name in (SKILLED_CAMPAIGN, OTHER_CAMPAIGN, LOST_CAMPAIGN, UNKNOWN_SKILL_CAMPAIGN):
            if get_campaign_body(kube_api, namespace, name) is not None:
                patch_spec(kube_api, namespace, name, {"reclaimPolicy": "Delete"})
                delete_campaign(kube_api, namespace, name)
                wait_campaign(kube_api, namespace, name, lambda o: o is None, "deleted", 120, op)


def get_campaign_body(api: client.ApiClient, namespace: str, name: str) -> Any:
    return get_object(api, f"{GROUP}/{VERSION}", "LabelingCampaign", namespace, name)


def pool_documents(namespace: str) -> list[dict[str, Any]]:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": TOKENS_SECRET,
            "namespace": namespace,
            "labels": {POOL_OPT_IN_LABEL: POOL},
        },
        "stringData": dict(TOKENS),
    }
    pool = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": POOL, "namespace": namespace},
        "spec": {
            "identity": {"tokens": {"secretRef": {"name": TOKENS_SECRET}}},
            "skills": [{"name": "medical", "members": [SKILLED]}],
        },
    }
    return [secret, pool]


def pool_campaign(namespace: str, name: str, pool_ref: dict[str, Any]) -> dict[str, Any]:
    _, campaign = campaign_documents(namespace, name, **{"workers.replicas": 1})
    campaign["spec"]["labelers"] = {"poolRef": {"name": POOL, **pool_ref}}
    return campaign


def decoded(secret: dict[str, Any] | None) -> dict[str, str]:
    data = (secret or {}).get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def router_config(api: client.ApiClient, namespace: str) -> RouterConfig | None:
    config_map = get_object(api, "v1", "ConfigMap", namespace, ROUTER)
    if config_map is None:
        return None
    return RouterConfig.model_validate_json(config_map["data"][ROUTER_CONFIG_KEY])


def routed(api: client.ApiClient, namespace: str) -> list[str]:
    config = router_config(api, namespace)
    return sorted(c.name for c in config.campaigns) if config else []


def route_keys(api: client.ApiClient, namespace: str) -> list[str]:
    secret = get_object(api, "v1", "Secret", namespace, ROUTER)
    return sorted(k for k in decoded(secret) if k.startswith("campaign."))


def pool_status(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    pool = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, POOL
    )
    assert isinstance(pool, dict)
    return dict(pool.get("status") or {})


def request(
    url: str, token: str, method: str = "GET", data: bytes | None = None
) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            return int(reply.status), reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def produce_items(bootstrap: str, topic: str, ids: list[str]) -> None:
    producer = Producer(client_connection(bootstrap).client_config({"acks": "all"}))
    for item in ids:
        payload = {
            "prompt": f"Which answer helps more? ({item})",
            "responses": [{"id": "a", "text": "This one."}, {"id": "b", "text": "That one."}],
        }
        value = json.dumps({"id": item, "payload": payload})
        producer.produce(topic, key=item.encode(), value=value)
    assert producer.flush(30) == 0, "items were not delivered to Kafka"


def test_a_tokens_pool_serves_its_campaigns(
    kube_api: client.ApiClient,
    namespace: str,
    operator: Operator,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    apply(kube_api, pool_documents(namespace))
    apply(
        kube_api,
        [
            pool_campaign(namespace, SKILLED_CAMPAIGN, {"requiredSkills": ["medical"]}),
            pool_campaign(namespace, OTHER_CAMPAIGN, {"weight": 3}),
        ],
    )
    both = sorted([OTHER_CAMPAIGN, SKILLED_CAMPAIGN])
    poll(lambda: routed(kube_api, namespace) == both, f"router config lists {both}", 90)
    poll(
        lambda: route_keys(kube_api, namespace) == [f"campaign.{n}" for n in both],
        "a route token per member",
        60,
    )

    # The router's objects: owned by the pool, with the right content.
    config = router_config(kube_api, namespace)
    assert config is not None
    assert config.pool == POOL and config.namespace == namespace
    by_name = {c.name: c for c in config.campaigns}
    assert by_name[SKILLED_CAMPAIGN].required_skills == ["medical"]
    assert by_name[OTHER_CAMPAIGN].weight == 3
    assert by_name[OTHER_CAMPAIGN].url.startswith(
        f"http://{OTHER_CAMPAIGN}-worker.{namespace}.svc:"
    )
    secret = get_object(kube_api, "v1", "Secret", namespace, ROUTER)
    assert secret is not None
    values = decoded(secret)
    digests = json.loads(values[LABELER_DIGESTS_KEY])
    assert digests == {who: token_digest(t.encode()).hex() for who, t in TOKENS.items()}
    assert not set(TOKENS.values()) & set(values.values()), "a labeler token in the router Secret"
    for kind, api_version in (
        ("ConfigMap", "v1"),
        ("Secret", "v1"),
        ("Service", "v1"),
        ("Deployment", "apps/v1"),
    ):
        obj = get_object(kube_api, api_version, kind, namespace, ROUTER)
        assert obj is not None, f"{kind} {ROUTER} missing"
        owners = obj["metadata"].get("ownerReferences") or []
        assert [(o["kind"], o["name"]) for o in owners] == [(KIND, POOL)], f"{kind}: {owners}"
    service = get_object(kube_api, "v1", "Service", namespace, ROUTER)
    assert service is not None and service["spec"]["ports"][0]["port"] == 80
    deployment = get_object(kube_api, "apps/v1", "Deployment", namespace, ROUTER)
    assert deployment is not None
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert [*container.get("command", []), *container.get("args", [])][:2] == [
        "labelops",
        "router",
    ]
    env_names = {e["name"] for e in container["env"]}
    assert {ENV_ROUTER_CONFIG, ENV_LABELER_DIGESTS} <= env_names

    # The skilled campaign's worker: alice in, bob (no `medical`) out.
    wait_ready(kube_api, namespace, SKILLED_CAMPAIGN, timeout=240, operator=operator)
    wait_ready(kube_api, namespace, OTHER_CAMPAIGN, timeout=240, operator=operator)
    pods: dict[str, podrunner.LocalPod] = {}
    router_pods: list[podrunner.LocalPod] = []
    try:
        for name in both:
            (pods[name],) = podrunner.start_pods(kube_api, namespace, f"{name}-worker", tmp_path)
        for name in both:
            pods[name].wait_ready(timeout=120)
            topic = CampaignNames(namespace, name).items_topic
            produce_items(kafka_bootstrap, topic, [f"{name}-1", f"{name}-2"])
        worker = pods[SKILLED_CAMPAIGN]
        poll(
            lambda: request(f"{worker.url}/v1/me", TOKENS[SKILLED])[0] == 200,
            f"{SKILLED} (skilled) accepted by {SKILLED_CAMPAIGN}'s worker",
            60,
        )
        refused = request(f"{worker.url}/v1/me", TOKENS[UNSKILLED])[0]
        assert refused in (401, 403), f"{UNSKILLED} (unskilled) got {refused}"

        # The pool's status: both campaigns with nominal shares, observed generation.
        def listed() -> bool:
            status = pool_status(kube_api, namespace)
            names = sorted(c["name"] for c in status.get("campaigns") or [])
            shares = [c.get("nominalShare") for c in status.get("campaigns") or []]
            return names == both and all(s is not None for s in shares)

        poll(listed, "pool status lists both campaigns with nominal shares", 120, operator.log)
        status = pool_status(kube_api, namespace)
        assert status.get("observedGeneration") == 1
        shares = {c["name"]: c["nominalShare"] for c in status["campaigns"]}
        # Weights 1 and 3 in one tier.
        assert shares == {SKILLED_CAMPAIGN: 0.25, OTHER_CAMPAIGN: 0.75}, shares

        # The router, from its Deployment, pointed at the local worker instead of the
        # cluster DNS name a real pod would resolve.
        local = config.model_copy(
            update={
                "campaigns": [
                    c.model_copy(update={"url": pods[c.name].url}) for c in config.campaigns
                ]
            }
        )
        router_port = free_port()
        router_pods = podrunner.start_pods(
            kube_api,
            namespace,
            ROUTER,
            tmp_path,
            replicas=1,
            extra_env={
                ENV_ROUTER_CONFIG: local.model_dump_json(by_alias=True),
                ROUTER_PORT_ENV: str(router_port),
            },
        )
        router_url = f"http://127.0.0.1:{router_port}"

        def router_ready() -> bool:
            try:
                with urllib.request.urlopen(f"{router_url}/readyz", timeout=2) as reply:
                    return int(reply.status) == 200
            except OSError:
                return False

        poll(router_ready, "router /readyz", 60)
        assert request(f"{router_url}/v1/me", TOKENS[SKILLED])[0] == 200
        assert request(f"{router_url}/v1/me", "not-a-token")[0] == 401
        # A claim forwarded with the router's service token: the worker takes it only if
        # the token's digest reached the campaign's schema. Until a worker has ingested the
        # items produced above, the claim finds no work (204): asked again until it leases.
        answers: list[tuple[int, bytes]] = []

        def leased() -> bool:
            answers.append(request(f"{router_url}/v1/tasks/claim", TOKENS[SKILLED], "POST", b""))
            return answers[-1][0] == 200

        poll(
            leased,
            "a claim through the router leases a task",
            60,
            lambda: f"last answer: {answers[-1][0]} {answers[-1][1]!r}",
        )
        body = answers[-1][1]
        task_id = str(json.loads(body)["id"])
        assert split_task_id(task_id) is not None, task_id
        assert split_task_id(task_id)[0] in both, task_id  # type: ignore[index]
    finally:
        podrunner.stop_pods(router_pods, tmp_path)
        podrunner.stop_pods(list(pods.values()), tmp_path)

    # A campaign leaving: out of the router's config and Secret.
    patch_spec(kube_api, namespace, OTHER_CAMPAIGN, {"reclaimPolicy": "Delete"})
    delete_campaign(kube_api, namespace, OTHER_CAMPAIGN)
    poll(
        lambda: (
            routed(kube_api, namespace) == [SKILLED_CAMPAIGN]
            and route_keys(kube_api, namespace) == [f"campaign.{SKILLED_CAMPAIGN}"]
        ),
        f"{OTHER_CAMPAIGN} dropped from the router config and Secret",
        90,
    )


def test_a_missing_pool_or_skill_is_named_on_the_campaign(
    kube_api: client.ApiClient, namespace: str, operator: Operator
) -> None:
    lost = pool_campaign(namespace, LOST_CAMPAIGN, {})
    lost["spec"]["labelers"]["poolRef"]["name"] = "nobody"
    apply(
        kube_api,
        [
            *pool_documents(namespace),
            lost,
            pool_campaign(namespace, UNKNOWN_SKILL_CAMPAIGN, {"requiredSkills": ["surgery"]}),
        ],
    )

    def workers_ready_reason(reason: str, *named: str) -> Callable[[Any], bool]:
        def check(obj: Any) -> bool:
            found = condition(obj, "WorkersReady")
            message = str(found.get("message", ""))
            return (
                found.get("status") == "False"
                and found.get("reason") == reason
                and all(n in message for n in named)
            )

        return check

    wait_campaign(
        kube_api,
        namespace,
        LOST_CAMPAIGN,
        workers_ready_reason("PoolNotFound", "spec.labelers.poolRef.name", "nobody"),
        "WorkersReady=False PoolNotFound naming the pool",
        180,
        operator,
    )
    wait_campaign(
        kube_api,
        namespace,
        UNKNOWN_SKILL_CAMPAIGN,
        workers_ready_reason("UnknownSkill", "surgery", "medical"),
        "WorkersReady=False UnknownSkill naming the skill and the pool's skills",
        180,
        operator,
    )
