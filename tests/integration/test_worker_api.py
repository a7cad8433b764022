"""The worker's HTTP API over real HTTP, with real Postgres: what a labeler's client sees.

Every refusal must be an RFC 9457 problem that names what was wrong and what is allowed;
the server runs with strict response validation, so any response that strays from the
served OpenAPI document fails the request with a 500 here.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from typing import Any
from urllib.parse import quote

import pytest
import requests
from worker_harness import (
    TOKENS,
    Campaign,
    LiveApi,
    campaign_config,
    live_api,
    pairwise_payload,
    provisioned,
    unique_name,
)

from labelops.api.tasktypes import label_schema
from labelops.store.items import ItemRecord
from labelops.worker.readiness import ReadinessCheck

pytestmark = pytest.mark.integration

PAIRWISE = {"type": "pairwise"}
RATING = {"type": "rating", "scale": {"min": 1, "max": 5}}
PROBLEM = "application/problem+json"
PAIR_VALUE = {"value": {"preferred": "tie"}}

MakeApi = Callable[..., tuple[Campaign, LiveApi]]


@pytest.fixture
def make_api(postgres_dsn: str, kafka_bootstrap: str) -> Iterator[MakeApi]:
    """A fresh campaign with `items` pairwise (or rating) items, served over HTTP."""
    with ExitStack() as stack:

        def make(
            task: Mapping[str, Any] = PAIRWISE,
            *,
            items: list[ItemRecord] | int = 3,
            labels_per_item: int = 1,
            quotas: Mapping[str, Any] | None = None,
            readiness_checks: Mapping[str, ReadinessCheck] | None = None,
        ) -> tuple[Campaign, LiveApi]:
            config = campaign_config(
                unique_name("api"), task, labels_per_item=labels_per_item, quotas=quotas
            )
            campaign = stack.enter_context(provisioned(postgres_dsn, kafka_bootstrap, config))
            if isinstance(items, int):
                payload = (lambda n: {"text": f"text {n}"}) if task is RATING else pairwise_payload
                items = [ItemRecord(f"item-{n}", payload(n)) for n in range(items)]
            campaign.seed(items)
            api = stack.enter_context(live_api(campaign, readiness_checks=readiness_checks))
            return campaign, api

        yield make


def path_segment(item_id: str) -> str:
    # Dots too: a client would otherwise resolve an id of ".." as "the parent".
    return quote(item_id, safe="").replace(".", "%2E")


def labels_url(api: LiveApi, item_id: str) -> str:
    return f"{api.url}/v1/tasks/{path_segment(item_id)}/labels"


def release_url(api: LiveApi, item_id: str) -> str:
    return f"{api.url}/v1/tasks/{path_segment(item_id)}/release"


def problem(response: requests.Response, status: int, kind: str) -> dict[str, Any]:
    """The problem body, after checking it is one of `kind` with `status`."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"https://labelops.dev/problems/{kind}", body
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


def claim(session: requests.Session, api: LiveApi) -> dict[str, Any]:
    response = session.post(f"{api.url}/v1/tasks/claim")
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


def preferred_first(task: dict[str, Any]) -> dict[str, Any]:
    return {"value": {"preferred": task["payload"]["responses"][0]["id"]}}


# --- authentication ---------------------------------------------------------------------

LABELER_ENDPOINTS = [
    ("POST", "/v1/tasks/claim"),
    ("POST", "/v1/tasks/item-0/labels"),
    ("POST", "/v1/tasks/item-0/release"),
    ("GET", "/v1/me"),
    ("GET", "/v1/progress"),
    ("GET", "/v1/campaign"),
]


def test_labeler_endpoints_refuse_missing_malformed_and_unknown_tokens(make_api: MakeApi) -> None:
    _, api = make_api()
    cases = [
        ({}, 'Bearer realm="labelops"', "missing credentials"),
        ({"Authorization": "Basic YWxpY2U6eA=="}, 'error="invalid_request"', "Bearer"),
        ({"Authorization": "Bearer not-a-token"}, 'error="invalid_token"', "not recognised"),
        # A valid token's prefix must not pass: the whole token is compared.
        ({"Authorization": f"Bearer {TOKENS['alice'][:-1]}"}, 'error="invalid_token"', ""),
    ]
    for method, path in LABELER_ENDPOINTS:
        for headers, challenge, said in cases:
            response = requests.request(method, api.url + path, headers=headers, json={})
            body = problem(response, 401, "unauthorized")
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert challenge in response.headers["WWW-Authenticate"]
            assert said in body["detail"]
            assert TOKENS["alice"] not in response.text


def test_operational_endpoints_need_no_token(make_api: MakeApi) -> None:
    _, api = make_api()
    for path, media_type in [
        ("/healthz", "application/json"),
        ("/readyz", "application/json"),
        ("/metrics", "text/plain"),
        ("/openapi.json", "application/json"),
        ("/", "text/html"),
    ]:
        response = requests.get(api.url + path)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["Content-Type"].startswith(media_type)


# --- claim ------------------------------------------------------------------------------


def test_claim_leases_the_highest_priority_first_and_204_when_nothing_is_left(
    make_api: MakeApi,
) -> None:
    items = [
        ItemRecord("low", pairwise_payload(1), priority=0),
        ItemRecord("high", pairwise_payload(2), priority=7),
    ]
    campaign, api = make_api(items=items)
    alice = api.session("alice")
    before = dt.datetime.now(dt.UTC)

    first = claim(alice, api)
    assert (first["id"], first["priority"]) == ("high", 7)
    assert first["payload"] == pairwise_payload(2)
    lease_ends = dt.datetime.fromisoformat(first["leaseExpiresAt"])
    lease = dt.timedelta(seconds=campaign.config.quotas.lease_seconds)
    assert (
        before + lease - dt.timedelta(seconds=5)
        < lease_ends
        < before + lease + dt.timedelta(seconds=5)
    )

    assert claim(alice, api)["id"] == "low"
    nothing = alice.post(f"{api.url}/v1/tasks/claim")
    assert nothing.status_code == 204
    assert nothing.content == b""


def test_claim_beyond_max_leases_is_429_with_retry_after(make_api: MakeApi) -> None:
    _, api = make_api(quotas={"maxLeasesPerLabeler": 1, "leaseSeconds": 120})
    alice = api.session("alice")
    claim(alice, api)

    refused = alice.post(f"{api.url}/v1/tasks/claim")
    body = problem(refused, 429, "quota-exceeded")
    assert body["reason"] == "max_leases_per_labeler"
    assert 1 <= int(refused.headers["Retry-After"]) <= 120
    assert body["retryAfter"] == int(refused.headers["Retry-After"])
    assert "maxLeasesPerLabeler" in body["detail"]


def test_daily_quota_is_429_until_utc_midnight(make_api: MakeApi) -> None:
    _, api = make_api(quotas={"perLabelerDaily": 1})
    alice = api.session("alice")
    task = claim(alice, api)
    assert alice.post(labels_url(api, task["id"]), json=preferred_first(task)).status_code == 201

    refused = alice.post(f"{api.url}/v1/tasks/claim")
    body = problem(refused, 429, "quota-exceeded")
    assert body["reason"] == "per_labeler_daily"
    now = dt.datetime.now(dt.UTC)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    assert abs(int(refused.headers["Retry-After"]) - (midnight - now).total_seconds()) < 10
    assert "perLabelerDaily" in body["detail"]


# --- submit -----------------------------------------------------------------------------


def test_label_is_accepted_once_and_a_retry_with_its_key_replays_the_result(
    make_api: MakeApi,
) -> None:
    campaign, api = make_api()
    alice = api.session("alice")
    task = claim(alice, api)
    key = {"Idempotency-Key": "3c6f2a8e-retry-1"}

    created = alice.post(labels_url(api, task["id"]), json=preferred_first(task), headers=key)
    assert created.status_code == 201, created.text
    receipt = created.json()
    assert receipt["itemId"] == task["id"]
    assert receipt["labeler"] == "alice"
    assert receipt["replayed"] is False
    assert receipt["itemCompleted"] is True  # labelsPerItem is 1

    replay = alice.post(labels_url(api, task["id"]), json=preferred_first(task), headers=key)
    assert replay.status_code == 200, replay.text
    assert replay.json() == {**receipt, "replayed": True}
    assert campaign.count("labels") == 1

    other_value = {"value": {"preferred": "tie"}}
    reused = alice.post(labels_url(api, task["id"]), json=other_value, headers=key)
    assert problem(reused, 409, "idempotency-key-reused")["reason"] == "idempotency_key_reused"


def test_a_receipt_can_carry_the_next_task(make_api: MakeApi) -> None:
    """?next=true: one request per label; the receipt holds the next lease, null at the end."""
    campaign, api = make_api(items=3)
    alice = api.session("alice")
    task = claim(alice, api)
    labeled = []
    while task is not None:
        response = alice.post(
            labels_url(api, task["id"]), params={"next": "true"}, json=preferred_first(task)
        )
        assert response.status_code == 201, response.text
        receipt = response.json()
        assert receipt["itemId"] == task["id"]
        labeled.append(task["id"])
        task = receipt["next"]
        assert task is None or task["id"] not in labeled
    assert sorted(labeled) == ["item-0", "item-1", "item-2"]
    assert campaign.count("leases") == 0
    assert alice.post(f"{api.url}/v1/tasks/claim").status_code == 204

    without = alice.post(labels_url(api, "item-0"), params={"next": "false"}, json=PAIR_VALUE)
    assert "next" not in problem(without, 409, "already-labeled")
    for bad in ({"next": "yes"}, {"next": ["true", "true"]}):
        malformed = alice.post(labels_url(api, "item-0"), params=bad, json=PAIR_VALUE)
        assert "next" in problem(malformed, 400, "invalid-request")["detail"]


def test_invalid_labels_are_422_naming_each_failing_field(make_api: MakeApi) -> None:
    campaign, api = make_api(RATING)
    alice = api.session("alice")
    task = claim(alice, api)
    cases: list[tuple[Any, str, str]] = [
        ({"value": {"score": 9}}, "/value/score", "maximum of 5"),
        ({"value": {"score": 0}}, "/value/score", "minimum of 1"),
        ({"value": {"score": "4"}}, "/value/score", "not of type 'integer'"),
        ({"value": {}}, "/value/score", "required"),
        ({"value": {"score": 3, "note": "x"}}, "/value/note", "not allowed"),
        ({"valeu": {"score": 3}}, "/valeu", "not allowed"),
        ({"valeu": {"score": 3}}, "/value", "required"),
    ]
    for body, pointer, said in cases:
        response = alice.post(labels_url(api, task["id"]), json=body)
        refusal = problem(response, 422, "invalid-label" if "value" in body else "invalid-request")
        matching = [e for e in refusal["errors"] if e["pointer"] == pointer]
        assert matching, (body, refusal)
        assert said in matching[0]["message"], (body, refusal)
    assert campaign.count("labels") == 0

    accepted = alice.post(labels_url(api, task["id"]), json={"value": {"score": 5}})
    assert accepted.status_code == 201, accepted.text


def test_item_specific_rules_are_422_with_the_allowed_values(make_api: MakeApi) -> None:
    _, api = make_api()
    alice = api.session("alice")
    task = claim(alice, api)
    response = alice.post(labels_url(api, task["id"]), json={"value": {"preferred": "m9"}})
    body = problem(response, 422, "invalid-label")
    assert body["errors"][0]["pointer"] == "/value/preferred"
    for allowed in [r["id"] for r in task["payload"]["responses"]] + ["tie"]:
        assert repr(allowed) in body["errors"][0]["message"]


def test_label_for_an_unknown_item_is_404(make_api: MakeApi) -> None:
    _, api = make_api()
    response = api.session("alice").post(labels_url(api, "no-such-item"), json=PAIR_VALUE)
    assert "no-such-item" in problem(response, 404, "not-found")["detail"]


def test_label_without_a_claim_is_409_lease_required(make_api: MakeApi) -> None:
    _, api = make_api()
    response = api.session("alice").post(labels_url(api, "item-0"), json=PAIR_VALUE)
    body = problem(response, 409, "lease-required")
    assert body["reason"] == "lease_required"


def test_full_items_and_second_labels_are_409(make_api: MakeApi) -> None:
    _, api = make_api(items=1)
    alice, bob = api.session("alice"), api.session("bob")
    task = claim(alice, api)
    assert alice.post(labels_url(api, task["id"]), json=PAIR_VALUE).status_code == 201

    full = bob.post(labels_url(api, task["id"]), json=PAIR_VALUE)
    assert problem(full, 409, "item-full")["reason"] == "item_full"
    again = alice.post(labels_url(api, task["id"]), json=PAIR_VALUE)
    assert problem(again, 409, "already-labeled")["reason"] == "already_labeled"


def test_the_body_must_be_a_json_object_of_reasonable_size(make_api: MakeApi) -> None:
    _, api = make_api()
    alice = api.session("alice")
    url = labels_url(api, claim(alice, api)["id"])

    as_text = alice.post(
        url, data='{"value": {"preferred": "tie"}}', headers={"Content-Type": "text/plain"}
    )
    assert "application/json" in problem(as_text, 415, "unsupported-media-type")["detail"]
    broken = alice.post(url, data="{not json", headers={"Content-Type": "application/json"})
    assert "not valid JSON" in problem(broken, 400, "invalid-json")["detail"]
    huge = alice.post(url, json={"value": {"preferred": "tie", "rationale": "x" * 1_100_000}})
    problem(huge, 413, "payload-too-large")
    bad_key = alice.post(url, json=PAIR_VALUE, headers={"Idempotency-Key": "has spaces"})
    assert "Idempotency-Key" in problem(bad_key, 400, "invalid-request")["detail"]
    impossible_id = alice.post(labels_url(api, "x" * 513), json=PAIR_VALUE)
    assert "512" in problem(impossible_id, 400, "invalid-request")["detail"]


def test_item_ids_that_need_url_encoding_round_trip(make_api: MakeApi) -> None:
    odd_ids = ["a/b", "/leading", "trailing/", "sp ace?&#%", "ünï/cödé", "..", "claim"]
    _, api = make_api(items=[ItemRecord(i, pairwise_payload(n)) for n, i in enumerate(odd_ids)])
    alice = api.session("alice")
    seen = []
    for _ in odd_ids:
        task = claim(alice, api)
        response = alice.post(labels_url(api, task["id"]), json=PAIR_VALUE)
        assert response.status_code == 201, (task["id"], response.text)
        assert response.json()["itemId"] == task["id"]
        seen.append(task["id"])
    assert sorted(seen) == sorted(odd_ids)


# --- release ----------------------------------------------------------------------------


def test_release_returns_the_task_to_others_but_not_to_the_labeler_who_skipped(
    make_api: MakeApi,
) -> None:
    _, api = make_api(items=1)
    alice, bob = api.session("alice"), api.session("bob")
    task = claim(alice, api)

    released = alice.post(release_url(api, task["id"]))
    assert released.status_code == 200, released.text
    assert released.json() == {"itemId": task["id"], "released": True}
    assert alice.post(f"{api.url}/v1/tasks/claim").status_code == 204
    assert claim(bob, api)["id"] == task["id"]

    again = alice.post(release_url(api, task["id"]))
    assert "claim it first" in problem(again, 409, "not-leased")["detail"]
    unknown = alice.post(release_url(api, "nope"))
    problem(unknown, 404, "not-found")


# --- me, progress, campaign -------------------------------------------------------------


def test_me_and_progress_follow_the_labels(make_api: MakeApi) -> None:
    _, api = make_api(items=3, labels_per_item=2, quotas={"perLabelerDaily": 10})
    alice = api.session("alice")
    for _ in range(2):
        task = claim(alice, api)
        assert alice.post(labels_url(api, task["id"]), json=PAIR_VALUE).status_code == 201
    claim(alice, api)  # held, not labeled

    me = alice.get(f"{api.url}/v1/me").json()
    assert me["labeler"] == "alice"
    assert (me["labelsToday"], me["labelsTotal"], me["dailyQuota"], me["dailyLeft"]) == (
        2,
        2,
        10,
        8,
    )
    assert (me["activeLeases"], me["maxLeases"]) == (1, 5)
    assert me["quotaResetsAt"].endswith("T00:00:00Z")

    progress = alice.get(f"{api.url}/v1/progress").json()
    assert progress["itemsTotal"] == 3
    assert progress["labels"] == 2
    assert progress["itemsCompleted"] == 0  # each item needs 2 labels
    assert progress["labelsTarget"] == 10 * 2
    assert progress["percent"] == 10.0


def test_campaign_endpoint_tells_the_page_how_to_render_the_task(make_api: MakeApi) -> None:
    campaign, api = make_api(RATING)
    body = api.session("bob").get(f"{api.url}/v1/campaign").json()
    assert body["name"] == campaign.config.name
    assert body["task"]["type"] == "rating"
    assert body["task"]["scale"] == {"min": 1, "max": 5}
    assert body["task"]["instructions"] == campaign.config.task.instructions
    assert body["quotas"]["leaseSeconds"] == campaign.config.quotas.lease_seconds


# --- the document, errors, operations ---------------------------------------------------


def test_served_document_carries_this_campaigns_label_schema(make_api: MakeApi) -> None:
    campaign, api = make_api(RATING)
    document = requests.get(f"{api.url}/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    served = dict(document["components"]["schemas"]["LabelValue"])
    served.pop("description")
    assert served == label_schema(campaign.config.task)
    assert set(document["paths"]) >= {
        "/v1/tasks/claim",
        "/v1/tasks/{id}/labels",
        "/v1/tasks/{id}/release",
        "/v1/me",
        "/v1/progress",
        "/v1/campaign",
    }


def test_unknown_routes_and_methods_are_problems_too(make_api: MakeApi) -> None:
    _, api = make_api()
    assert (
        "/openapi.json"
        in problem(requests.get(f"{api.url}/v2/nothing"), 404, "not-found")["detail"]
    )
    wrong = requests.delete(f"{api.url}/v1/tasks/claim")
    problem(wrong, 405, "method-not-allowed")
    assert wrong.headers["Allow"] == "POST"


def test_readiness_names_the_failing_dependency(make_api: MakeApi) -> None:
    def kafka_down() -> None:
        raise ConnectionError("broker 127.0.0.1:1 unreachable")

    _, api = make_api(readiness_checks={"database": lambda: None, "kafka": kafka_down})
    response = requests.get(f"{api.url}/readyz")
    body = problem(response, 503, "not-ready")
    assert body["checks"] == {
        "database": "ok",
        "kafka": "ConnectionError: broker 127.0.0.1:1 unreachable",
    }
    assert "kafka" in body["detail"]


def test_a_slow_readiness_check_holds_up_no_other_request(make_api: MakeApi) -> None:
    """Every request of an HTTP process shares one event loop: a check that blocks (Kafka
    metadata can take seconds) must run off it, and two probes at once share one run."""
    release = threading.Event()
    started = threading.Event()

    def slow_kafka() -> None:
        started.set()
        if not release.wait(10):
            raise TimeoutError("the test never released the check")

    _, api = make_api(items=1, readiness_checks={"kafka": slow_kafka})
    alice = api.session("alice")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        probes = [pool.submit(requests.get, f"{api.url}/readyz", timeout=20) for _ in range(2)]
        assert started.wait(10)
        # While the check blocks, labeling goes on.
        task = claim(alice, api)
        assert alice.get(f"{api.url}/v1/me", timeout=5).status_code == 200
        assert (
            alice.post(labels_url(api, task["id"]), json=preferred_first(task)).status_code == 201
        )
        assert not any(p.done() for p in probes)
        release.set()
        answers = [p.result(timeout=20) for p in probes]
    assert [a.status_code for a in answers] == [200, 200]
    assert all(a.json()["checks"] == {"kafka": "ok"} for a in answers)


def test_metrics_count_requests_labels_and_claims(make_api: MakeApi) -> None:
    _, api = make_api(items=2)
    alice = api.session("alice")
    task = claim(alice, api)
    alice.post(labels_url(api, task["id"]), json={"value": {"preferred": "nobody"}})
    alice.post(labels_url(api, task["id"]), json=PAIR_VALUE)

    text = requests.get(f"{api.url}/metrics").text
    route = "/v1/tasks/<item_id:item_id>/labels"
    assert "labelops_worker_labels_accepted_total 1.0" in text
    assert 'labelops_worker_labels_rejected_total{reason="invalid-label"} 1.0' in text
    assert 'labelops_worker_claims_total{outcome="leased"} 1.0' in text
    assert (
        f'labelops_worker_http_requests_total{{method="POST",route="{route}",status="201"}} 1.0'
        in text
    )
    assert f'labelops_worker_http_request_duration_seconds_count{{route="{route}"}} 2.0' in text
    assert "labelops_worker_openapi_response_violations_total{" not in text
