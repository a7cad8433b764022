"""The worker's identities on real PostgreSQL and a real worker process: a pool router's
service token (kept as a digest in the campaign's schema, migration 0005) acting on behalf of
the labeler it names in Labelops-Labeler, and labelers signing in with an OIDC JWT."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from psycopg import sql
from test_oidc import AUDIENCE, Issuer, claims, issuer, published, rsa_key, sign
from test_store_support import unique_name
from worker_harness import (
    TOKENS,
    Campaign,
    WorkerProcess,
    campaign_config,
    pairwise_payload,
    provisioned,
    wait_for,
)
from worker_harness import unique_name as unique_campaign

from labelops.api.pool_router import (
    ENV_OIDC_AUDIENCE,
    ENV_OIDC_ISSUER,
    ENV_OIDC_USERNAME_CLAIM,
    ENV_REQUIRED_SKILLS,
    ON_BEHALF_OF_HEADER,
    ROUTER_SERVICE,
)
from labelops.store.labeler_tokens import (
    read_token_digests,
    replace_service_digests,
    replace_token_digests,
    token_digest,
)
from labelops.store.migrations import migrate
from labelops.worker.auth import REFRESH_SECONDS

__all__ = ["issuer"]  # the loopback identity provider fixture, shared with test_oidc

pytestmark = pytest.mark.integration


def sha(token: str) -> bytes:
    return token_digest(token.encode())


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    name = unique_name("sid")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        migrate(conn, name)
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_service_digests_move_the_labelers_revision_and_are_read_with_them(
    postgres_dsn: str, schema: str
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        replace_token_digests(conn, schema, {"alice": sha("a")})
        first = read_token_digests(conn, schema, None)
        assert first is not None and first.services == {}

        assert replace_service_digests(conn, schema, {"router": sha("r1")}) is True
        second = read_token_digests(conn, schema, first.revision)
        assert second is not None and second.revision > first.revision
        assert second.by_labeler == {"alice": sha("a")}
        assert second.services == {"router": sha("r1")}

        # The same digests again change nothing and move nothing.
        assert replace_service_digests(conn, schema, {"router": sha("r1")}) is False
        assert read_token_digests(conn, schema, second.revision) is None

        assert replace_service_digests(conn, schema, {"router": sha("r2")}) is True
        rotated = read_token_digests(conn, schema, second.revision)
        assert rotated is not None and rotated.services == {"router": sha("r2")}

        assert replace_service_digests(conn, schema, {}) is True
        gone = read_token_digests(conn, schema, rotated.revision)
        assert gone is not None and gone.services == {} and gone.by_labeler == {"alice": sha("a")}


def test_a_token_is_never_both_a_labelers_and_a_services(postgres_dsn: str, schema: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        replace_token_digests(conn, schema, {"alice": sha("shared")})
        with pytest.raises(ValueError, match=r"labeler 'alice' and service 'router' share"):
            replace_service_digests(conn, schema, {"router": sha("shared")})
        replace_service_digests(conn, schema, {"router": sha("r")})
        with pytest.raises(ValueError, match=r"labeler 'bob' and service 'router' share"):
            replace_token_digests(conn, schema, {"alice": sha("shared"), "bob": sha("r")})
        with pytest.raises(ValueError, match=r"service 'router': a token digest is 32 bytes"):
            replace_service_digests(conn, schema, {"router": b"short"})
        with pytest.raises(ValueError, match="two services share a token"):
            replace_service_digests(conn, schema, {"router": sha("x"), "other": sha("x")})
        now = read_token_digests(conn, schema, None)
        assert now is not None
        assert now.by_labeler == {"alice": sha("shared")} and now.services == {"router": sha("r")}


# --- a real `labelops worker` process with a service token, OIDC sign-in and a skill ---

ROUTER_TOKEN = "router-token-6c1f0a9e2b"
ROTATED_ROUTER_TOKEN = "router-token-rotated-44d7e1"
PYTHON = {"name": "python", "groups": ["coders"], "members": ["alice"]}


@dataclass
class IdentityWorker:
    campaign: Campaign
    worker: WorkerProcess
    issuer: Issuer
    key: rsa.RSAPrivateKey
    router_token: str = ROUTER_TOKEN

    def as_router(self, labeler: str | None) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.router_token}"
        if labeler is not None:
            session.headers[ON_BEHALF_OF_HEADER] = labeler
        return session

    def bearer(self, token: str) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        return session

    def jwt(self, **changes: Any) -> str:
        kid = changes.pop("kid", "wid-key")
        return sign(claims(self.issuer, **changes), self.key, kid=kid)

    def labelers_of_labels(self) -> dict[str, str]:
        with self.campaign.pool.connection() as conn:
            rows = conn.execute(
                sql.SQL(
                    "SELECT i.external_id, l.labeler FROM {} l JOIN {} i ON i.id = l.item_id"
                ).format(
                    sql.Identifier(self.campaign.config.schema_, "labels"),
                    sql.Identifier(self.campaign.config.schema_, "items"),
                )
            ).fetchall()
        return {item_id: labeler for item_id, labeler in rows}


@pytest.fixture(scope="module")
def identity_worker(
    postgres_dsn: str,
    kafka_bootstrap: str,
    issuer: Issuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[IdentityWorker]:
    key = rsa_key()
    issuer.keys.append(published(key, "wid-key"))
    config = campaign_config(unique_campaign("wid"), {"type": "pairwise"}, items=40)
    with provisioned(postgres_dsn, kafka_bootstrap, config) as campaign:
        campaign.seed([(f"item-{n}", pairwise_payload(n)) for n in range(40)])
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            replace_service_digests(conn, config.schema_, {ROUTER_SERVICE: sha(ROUTER_TOKEN)})
        env = {
            **campaign.worker_env(TOKENS),
            ENV_OIDC_ISSUER: issuer.url,
            ENV_OIDC_AUDIENCE: AUDIENCE,
            ENV_OIDC_USERNAME_CLAIM: "email",
            ENV_REQUIRED_SKILLS: json.dumps([PYTHON]),
        }
        log = tmp_path_factory.mktemp("identity") / "worker.log"
        worker = WorkerProcess(env, log)
        try:
            worker.wait_ready()
            yield IdentityWorker(campaign, worker, issuer, key)
            assert worker.terminate() == 0, worker.log()
        finally:
            worker.kill()
        assert ROUTER_TOKEN not in worker.log() and ROTATED_ROUTER_TOKEN not in worker.log()


def problem(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


def claim_and_label(session: requests.Session, url: str) -> str:
    claimed = session.post(f"{url}/v1/tasks/claim")
    assert claimed.status_code == 200, claimed.text
    item_id: str = claimed.json()["id"]
    submitted = session.post(
        f"{url}/v1/tasks/{quote(item_id, safe='')}/labels", json={"value": {"preferred": "tie"}}
    )
    assert submitted.status_code == 201, submitted.text
    return item_id


def test_the_router_claims_and_submits_for_the_labeler_it_names(
    identity_worker: IdentityWorker,
) -> None:
    url = identity_worker.worker.url
    # dave holds no token of the campaign and no skill: the router vouches for both.
    for_dave = identity_worker.as_router("dave@example.com")
    item = claim_and_label(for_dave, url)
    assert identity_worker.labelers_of_labels()[item] == "dave@example.com"
    me = for_dave.get(f"{url}/v1/me")
    assert me.status_code == 200, me.text
    assert me.json()["labeler"] == "dave@example.com" and me.json()["labelsTotal"] == 1
    # Another labeler through the same credential is another labeler to the worker.
    other = claim_and_label(identity_worker.as_router("erin"), url)
    assert identity_worker.labelers_of_labels()[other] == "erin"
    assert identity_worker.as_router("erin").get(f"{url}/v1/me").json()["labelsTotal"] == 1


def test_the_on_behalf_of_header_only_comes_with_the_routers_token(
    identity_worker: IdentityWorker,
) -> None:
    url = identity_worker.worker.url
    alice = identity_worker.bearer(TOKENS["alice"])
    alice.headers[ON_BEHALF_OF_HEADER] = "bob"
    refused = problem(alice.post(f"{url}/v1/tasks/claim"), 400)
    assert ON_BEHALF_OF_HEADER in refused["detail"] and "'alice'" in refused["detail"]
    assert refused["reason"] == "on-behalf-of-not-allowed"

    missing = problem(identity_worker.as_router(None).post(f"{url}/v1/tasks/claim"), 400)
    assert f"header {ON_BEHALF_OF_HEADER} is missing" in missing["detail"]
    assert missing["reason"] == "on-behalf-of-missing"

    for bad in ("two words", "x" * 254):
        invalid = problem(identity_worker.as_router(bad).get(f"{url}/v1/me"), 400)
        assert ON_BEHALF_OF_HEADER in invalid["detail"]
        assert repr(bad) in invalid["detail"] and "1 to 253 visible ASCII" in invalid["detail"]
        assert invalid["reason"] == "on-behalf-of-invalid"
    # Nothing was claimed for anyone by the refused requests.
    assert identity_worker.bearer(TOKENS["alice"]).get(f"{url}/v1/me").json()["activeLeases"] == 0


def test_a_rotated_router_token_refuses_the_old_one_within_the_refresh_period(
    identity_worker: IdentityWorker,
) -> None:
    url = identity_worker.worker.url
    old = identity_worker.as_router("frank")
    assert old.get(f"{url}/v1/me").status_code == 200
    with psycopg.connect(identity_worker.campaign.dsn, autocommit=True) as conn:
        rotated = {ROUTER_SERVICE: sha(ROTATED_ROUTER_TOKEN)}
        assert replace_service_digests(conn, identity_worker.campaign.config.schema_, rotated)
    started = time.monotonic()
    identity_worker.router_token = ROTATED_ROUTER_TOKEN
    new = identity_worker.as_router("frank")
    # Every HTTP process of the worker refreshes on its own: both must have moved.
    wait_for(
        lambda: (
            all(old.get(f"{url}/v1/me").status_code == 401 for _ in range(6))
            and all(new.get(f"{url}/v1/me").status_code == 200 for _ in range(6))
        ),
        REFRESH_SECONDS + 5,
        lambda: (
            f"old {old.get(f'{url}/v1/me').status_code}, new {new.get(f'{url}/v1/me').status_code}"
        ),
    )
    assert time.monotonic() - started < REFRESH_SECONDS + 5
    refused = problem(old.get(f"{url}/v1/me"), 401)
    assert 'error="invalid_token"' in old.get(f"{url}/v1/me").headers["WWW-Authenticate"]
    assert "not recognised" in refused["detail"]


def test_labelers_sign_in_with_the_pools_oidc_tokens(identity_worker: IdentityWorker) -> None:
    url = identity_worker.worker.url
    anna = identity_worker.bearer(identity_worker.jwt(groups=["coders"]))
    item = claim_and_label(anna, url)
    assert identity_worker.labelers_of_labels()[item] == "anna@example.com"
    assert anna.get(f"{url}/v1/me").json()["labelsTotal"] == 1


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"aud": "someone-else"}, "wrong-audience"),
        ({"kid": "no-such-key"}, "unknown-key"),
        ({"email": None}, "missing-claim"),
    ],
)
def test_a_refused_oidc_token_is_401_with_the_reason(
    identity_worker: IdentityWorker, changes: dict[str, Any], reason: str
) -> None:
    url = identity_worker.worker.url
    response = identity_worker.bearer(identity_worker.jwt(**changes)).post(f"{url}/v1/tasks/claim")
    refused = problem(response, 401)
    assert refused["reason"] == reason
    assert f"({reason})" in refused["detail"]
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="labelops", error="invalid_token"'


def test_a_labeler_without_a_required_skill_is_403_naming_it(
    identity_worker: IdentityWorker,
) -> None:
    url = identity_worker.worker.url
    # A JWT whose groups grant no python, and a token labeler who is not among its members.
    for session, labeler in (
        (identity_worker.bearer(identity_worker.jwt(groups=["ml"])), "anna@example.com"),
        (identity_worker.bearer(TOKENS["bob"]), "bob"),
    ):
        refused = problem(session.post(f"{url}/v1/tasks/claim"), 403)
        assert refused["missingSkills"] == ["python"]
        assert (
            f"labeler {labeler!r} lacks the skill this campaign requires: python"
            in (refused["detail"])
        )
    # alice is a member of the skill: in with her token.
    assert identity_worker.bearer(TOKENS["alice"]).get(f"{url}/v1/me").status_code == 200


def relay(identity_worker: IdentityWorker, submissions: Any, token: str | None = None) -> Any:
    session = identity_worker.as_router(None)
    if token is not None:
        session = identity_worker.bearer(token)
    return session.post(
        f"{identity_worker.worker.url}/v1/relay/labels", json={"submissions": submissions}
    )


def test_the_routers_batch_answers_each_submission_as_it_would_alone(
    identity_worker: IdentityWorker,
) -> None:
    url = identity_worker.worker.url
    leased = {}
    for labeler in ("fay", "gus", "hal"):
        claim = identity_worker.as_router(labeler).post(f"{url}/v1/tasks/claim")
        assert claim.status_code == 200, claim.text
        leased[labeler] = claim.json()["id"]
    tie = {"value": {"preferred": "tie"}}
    answer = relay(
        identity_worker,
        [
            {"labeler": "fay", "itemId": leased["fay"], "body": tie, "next": True,
             "idempotencyKey": "fay-1"},
            {"labeler": "gus", "itemId": leased["gus"], "body": {"value": {"preferred": 7}},
             "next": False},
            {"labeler": "hal", "itemId": leased["fay"], "body": tie, "next": False},
            {"labeler": "two words", "itemId": leased["hal"], "body": tie, "next": False},
            {"labeler": "hal", "itemId": leased["hal"], "body": tie, "next": False},
            {"labeler": "hal", "itemId": "no such item", "body": tie, "next": False},
        ],
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [201, 422, 409, 400, 201, 404]
    fay, gus, hal_elsewhere, bad, hal, missing = (r["body"] for r in results)
    assert fay["labeler"] == "fay" and fay["itemId"] == leased["fay"]
    assert fay["next"]["id"] not in leased.values()  # her next task came with it
    assert gus["type"].endswith("/invalid-label") and gus["errors"][0]["pointer"].startswith(
        "/value"
    )
    # hal holds no lease on fay's item, which fay's label filled: 409 either way.
    assert hal_elsewhere["reason"] in ("item_full", "lease_required"), hal_elsewhere
    assert "'two words' is not a labeler id" in bad["detail"]
    assert hal["labeler"] == "hal" and missing["type"].endswith("/not-found")
    labels = identity_worker.labelers_of_labels()
    assert (labels[leased["fay"]], labels[leased["hal"]]) == ("fay", "hal")
    assert leased["gus"] not in labels  # refused, and gus keeps his lease
    assert identity_worker.as_router("gus").get(f"{url}/v1/me").json()["activeLeases"] == 1

    # The same key again is a replay, as alone.
    again = relay(
        identity_worker,
        [{"labeler": "fay", "itemId": leased["fay"], "body": tie, "next": False,
          "idempotencyKey": "fay-1"}],
    )  # fmt: skip
    assert again.status_code == 200, again.text
    [replay] = again.json()["results"]
    assert replay["status"] == 200 and replay["body"]["replayed"] is True
    assert replay["body"]["labelId"] == fay["labelId"]


def test_only_the_router_may_send_a_batch_and_a_batch_must_be_one(
    identity_worker: IdentityWorker,
) -> None:
    tie = {"value": {"preferred": "tie"}}
    one = [{"labeler": "alice", "itemId": "item-1", "body": tie, "next": False}]
    refused = problem(relay(identity_worker, one, token=TOKENS["alice"]), 403)
    assert refused["reason"] == "service-only" and "/v1/tasks/{id}/labels" in refused["detail"]
    assert problem(relay(identity_worker, []), 422)["errors"][0]["pointer"] == "/submissions"
    unfit = problem(relay(identity_worker, [{"labeler": "alice"}]), 422)
    assert "1 to 64 submissions" in unfit["detail"]
    not_json = identity_worker.as_router(None).post(
        f"{identity_worker.worker.url}/v1/relay/labels",
        data=b"{",
        headers={"Content-Type": "application/json"},
    )
    assert problem(not_json, 400)["type"].endswith("/invalid-json")
    # Nothing was stored for alice by any of them.
    assert "alice" not in identity_worker.labelers_of_labels().values()
