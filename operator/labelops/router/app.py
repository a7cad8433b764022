"""The router's HTTP API (aiohttp): the worker's labeler API, for a whole pool.

POST /v1/tasks/claim routes (state.py, fair_share.route) and forwards to the chosen
campaign's worker with that campaign's service token and the labeler in Labelops-Labeler;
the campaigns of Decision.order are tried in turn while workers answer 204 (no work), 403
(the labeler is blocked there), a refusal or nothing at all (unreachable). The task comes
back with the id `<campaign>:<item id>` and "campaign". Submits and releases go to the
campaign in the id: submits in batches with other labelers' (submit_relay.py, the worker's
POST /v1/relay/labels), each answered as alone. Workers' refusals pass through as they are
(RFC 9457 problems).

Submit with ?next=true: when the fair share would pick the same campaign for the labeler's
next task, `next=true` is forwarded (label and next lease in one transaction, one round
trip); otherwise the label is submitted alone and the next task is claimed by routing,
so ?next never lets a labeler stay in one campaign past its share.

Upstream: one ClientSession, its connector keeping up to connections_per_campaign
keep-alive connections to each worker Service; bodies are relayed as bytes, only task
replies are parsed (orjson) to rewrite their ids. Per request nothing is logged, and what
does not change is built once: each campaign's claim URL and headers, the metrics' children;
the session keeps no cookies (DummyCookieJar) and asks for no compression.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

from labelops.api.pool_router import (
    ON_BEHALF_OF_HEADER,
    split_task_id,
    task_id,
)
from labelops.router.identity import Identities, NotSignedIn, SignedIn, bearer_token
from labelops.router.metrics import RouterMetrics
from labelops.router.page import LabelingPage
from labelops.router.state import CapacityFull, PoolState
from labelops.router.submit_relay import Relayed, SubmitRelay
from labelops.router.upstream import JSON, PROBLEM_JSON, PROBLEM_TYPE_BASE, Upstream
from labelops.routing.fair_share import Decision

log = logging.getLogger("labelops.router")

IDEMPOTENCY_HEADER = "Idempotency-Key"
TASKS_PREFIX = "/v1/tasks/"
CLAIM_PATH = "/v1/tasks/claim"
RELAY_PATH = "/v1/relay/labels"
MAX_BODY_BYTES = 1024 * 1024 + 4096
# Labelers counted in /v1/pool's activeLabelers: seen this recently.
ACTIVE_WINDOW_SECONDS = 600.0
UNREACHABLE_RETRY_AFTER = 2
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=2)
# Below the worker's keep-alive (60 s), so the router never reuses a connection the worker is
# closing.
KEEPALIVE_SECONDS = 30.0
RELAY_HEADERS = {"Content-Type": JSON}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """A request refused before its handler's work (signing in): the middleware answers."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def problem(
    status: int,
    kind: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> web.Response:
    body = {
        "type": PROBLEM_TYPE_BASE + kind,
        "title": kind.replace("-", " ").capitalize(),
        "status": status,
        "detail": detail,
        **extensions,
    }
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type=PROBLEM_JSON
    )


def json_response(document: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(document), status=status, content_type=JSON)


def lease_expiry(value: Any) -> float:
    """leaseExpiresAt (RFC 3339, the worker writes Z) as epoch seconds."""
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time() + 60.0


class Router:
    def __init__(
        self,
        state: PoolState,
        identities: Identities,
        route_tokens: Mapping[str, str],
        *,
        connections_per_campaign: int = 64,
        relay_batches_in_flight: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.identities = identities
        self.metrics = RouterMetrics()
        self.clock = clock
        self._connections = connections_per_campaign
        self._session: aiohttp.ClientSession | None = None
        self._auth = {name: f"Bearer {token}" for name, token in route_tokens.items()}
        self._base = {c.name: c.url.rstrip("/") for c in state.campaigns.values()}
        self._claim_url = {
            name: URL(base + CLAIM_PATH, encoded=True) for name, base in self._base.items()
        }
        self._relays = {
            name: SubmitRelay(
                self._batch_sender(name),
                in_flight=relay_batches_in_flight,
                sent=self.metrics.relayed_batch.labels(name).observe,
            )
            for name in self._base
        }

    # --- wiring -------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[problems])
        app.router.add_post("/v1/tasks/claim", self.claim)
        app.router.add_post("/v1/tasks/{rest:.+}", self.task_action)
        app.router.add_get("/v1/me", self.me)
        app.router.add_get("/v1/pool", self.pool)
        app.router.add_get("/v1/campaigns/{campaign}", self.campaign_document)
        LabelingPage(self.state.config).register(app)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.prometheus)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, app: web.Application) -> None:
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=self._connections,
            keepalive_timeout=KEEPALIVE_SECONDS,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=UPSTREAM_TIMEOUT,
            json_serialize=lambda o: orjson.dumps(o).decode(),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def _close(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    # --- signing in -----------------------------------------------------------------------

    async def sign_in(self, request: web.Request) -> SignedIn:
        token = bearer_token(request.headers.get("Authorization"))
        outcome = token if isinstance(token, NotSignedIn) else await self.identities.sign_in(token)
        if isinstance(outcome, NotSignedIn):
            headers = {"WWW-Authenticate": outcome.www_authenticate}
            if outcome.status == 503:
                headers["Retry-After"] = str(UNREACHABLE_RETRY_AFTER)
                raise Refused(
                    problem(
                        503,
                        "issuer-unavailable",
                        outcome.detail,
                        headers=headers,
                        reason=outcome.reason,
                    )
                )
            raise Refused(
                problem(401, "unauthorized", outcome.detail, headers=headers, reason=outcome.reason)
            )
        return outcome

    # --- forwarding -----------------------------------------------------------------------

    async def forward(
        self,
        campaign: str,
        operation: str,
        path: str,
        labeler: str | None,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = False,
    ) -> Upstream:
        assert self._session is not None
        if path == CLAIM_PATH:
            url = self._claim_url[campaign]
        else:
            url = URL(self._base[campaign] + path, encoded=True)
        sent = {"Authorization": self._auth[campaign]}
        if labeler is not None:  # None: a relayed batch, which names its labelers
            sent[ON_BEHALF_OF_HEADER] = labeler
        if headers:
            sent.update(headers)
        started = time.perf_counter()
        for attempt in (1, 2):
            try:
                async with self._session.post(url, data=body, headers=sent) as response:
                    data = await response.read()
                    upstream = Upstream(
                        response.status,
                        data,
                        response.headers.get("Content-Type", ""),
                        response.headers,
                    )
                    break
            except aiohttp.ServerDisconnectedError as err:
                # A pooled connection the worker closed as it was reused: the request did
                # not reach it; once more on a fresh one where that is safe.
                if retry and attempt == 1:
                    continue
                upstream = Upstream(None, error=f"{type(err).__name__}: {err}")
                break
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                upstream = Upstream(None, error=f"{type(err).__name__}: {err}")
                break
        self.metrics.upstream_took(campaign, operation, time.perf_counter() - started)
        return upstream

    def _batch_sender(self, campaign: str) -> Callable[[bytes, bool], Awaitable[Upstream]]:
        async def send(body: bytes, retry: bool) -> Upstream:
            return await self.forward(
                campaign,
                "relay",
                RELAY_PATH,
                None,
                body=body,
                headers=RELAY_HEADERS,
                retry=retry,
            )

        return send

    def unreachable(self, campaign: str, upstream: Upstream) -> web.Response:
        log.warning("campaign %s: worker unreachable: %s", campaign, upstream.error)
        return problem(
            503,
            "worker-unavailable",
            f"the worker of campaign {campaign!r} could not be reached ({upstream.error}); "
            f"retry after Retry-After seconds",
            headers={"Retry-After": str(UNREACHABLE_RETRY_AFTER)},
            campaign=campaign,
            retryAfter=UNREACHABLE_RETRY_AFTER,
        )

    # --- claims -----------------------------------------------------------------------------

    async def claim(self, request: web.Request) -> web.StreamResponse:
        who = await self.sign_in(request)
        return await self.routed_claim(who)

    async def routed_claim(self, who: SignedIn) -> web.Response:
        now = self.clock()
        labeler = self.state.labeler(who.labeler, who.groups, now)
        decision = self.state.decide(labeler, now)
        if isinstance(decision, CapacityFull):
            self.metrics.refused.labels("capacity").inc()
            return capacity_problem(decision)
        first_refusal: web.Response | None = None
        tried: set[str] = set()
        # Tier by tier: when every campaign of the top tier refused, the next one's turn.
        while isinstance(decision, Decision) and decision.order:
            for campaign in decision.order:
                tried.add(campaign)
                upstream = await self.forward(
                    campaign, "claim", CLAIM_PATH, who.labeler, retry=True
                )
                outcome, response = self._claimed(who.labeler, campaign, upstream)
                self.metrics.claimed(campaign, outcome)
                if outcome == "leased":
                    return response
                if outcome in ("refused", "unreachable", "error") and first_refusal is None:
                    first_refusal = response
            now = self.clock()
            labeler = self.state.labeler(who.labeler, who.groups, now)
            decision = self.state.decide(labeler, now, skip=frozenset(tried))
        if first_refusal is not None:
            return first_refusal
        self.metrics.refused.labels("no-work").inc()
        return web.Response(status=204)

    def _claimed(self, labeler: str, campaign: str, upstream: Upstream) -> tuple[str, web.Response]:
        now = self.clock()
        if upstream.status is None:
            self.state.no_work(campaign, now)
            return "unreachable", self.unreachable(campaign, upstream)
        if upstream.status == 200:
            task = upstream.parsed()
            return "leased", json_response(self._routed_task(labeler, campaign, task, now))
        if upstream.status == 204:
            self.state.no_work(campaign, now)
            return "empty", web.Response(status=204)
        if upstream.status == 403:
            self.state.blocked(labeler, campaign, now)
            return "blocked", upstream.relayed()
        return ("refused" if upstream.status < 500 else "error"), upstream.relayed()

    def _routed_task(
        self, labeler: str, campaign: str, task: dict[str, Any], now: float
    ) -> dict[str, Any]:
        item_id = task["id"]
        self.state.leased(labeler, campaign, item_id, lease_expiry(task.get("leaseExpiresAt")), now)
        task["id"] = task_id(campaign, item_id)
        task["campaign"] = campaign
        return task

    # --- submits and releases -----------------------------------------------------------------

    async def task_action(self, request: web.Request) -> web.StreamResponse:
        who = await self.sign_in(request)
        # The raw path: an item id may hold '/' (sent as %2F), which the decoded path loses.
        raw = request.raw_path.partition("?")[0][len(TASKS_PREFIX) :]
        encoded_id, _, action = raw.rpartition("/")
        if action not in ("labels", "release") or not encoded_id:
            return problem(
                404,
                "not-found",
                f"no such endpoint: {request.path}; tasks take /labels or /release",
            )
        routed = split_task_id(unquote(encoded_id))
        if routed is None:
            return problem(
                404,
                "not-found",
                f"task id {unquote(encoded_id)!r} names no campaign: ids through the pool's "
                "router are '<campaign>:<item id>', as POST /v1/tasks/claim returns them",
            )
        campaign, item_id = routed
        if campaign not in self.state.campaigns:
            return problem(
                404,
                "unknown-campaign",
                f"campaign {campaign!r} of task id {unquote(encoded_id)!r} is not one of this "
                f"pool's: {', '.join(sorted(self.state.campaigns)) or 'none'}",
                campaign=campaign,
            )
        path = f"{TASKS_PREFIX}{quote(item_id, safe='')}/{action}"
        if action == "release":
            return await self.release(who, campaign, item_id, path)
        return await self.submit(request, who, campaign, item_id, path)

    async def release(self, who: SignedIn, campaign: str, item_id: str, path: str) -> web.Response:
        upstream = await self.forward(campaign, "release", path, who.labeler)
        if upstream.status is None:
            return self.unreachable(campaign, upstream)
        if upstream.status in (200, 409):
            self.state.done(who.labeler, campaign, item_id)
        if upstream.status == 200:
            return json_response({**upstream.parsed(), **_routed_ids(campaign, item_id)})
        return upstream.relayed()

    async def submit(
        self, request: web.Request, who: SignedIn, campaign: str, item_id: str, path: str
    ) -> web.Response:
        nexts = request.query.getall("next", [])
        if len(nexts) > 1 or (nexts and nexts[0] not in ("true", "false")):
            return problem(
                400,
                "invalid-request",
                "the query parameter next must be given once, as true or false",
            )
        with_next = nexts == ["true"]
        now = self.clock()
        # The label frees this lease; is the labeler's next task this campaign's anyway?
        same_campaign = False
        if with_next:
            labeler = self.state.labeler(who.labeler, who.groups, now)
            decision = self.state.decide(labeler, now, freed=1)
            same_campaign = not isinstance(decision, CapacityFull) and decision.campaign == campaign
        body = await request.read()
        key = request.headers.get(IDEMPOTENCY_HEADER)
        upstream: Upstream | None = None
        if SubmitRelay.relayable(body, request.content_type):
            relayed = Relayed(who.labeler, item_id, body, key, same_campaign)
            upstream = await self._relays[campaign].submit(relayed)
        if upstream is None:  # alone: the worker's own refusal answers what is not relayable
            headers = {}
            if request.content_type:
                headers["Content-Type"] = request.headers.get("Content-Type", JSON)
            if key is not None:
                headers[IDEMPOTENCY_HEADER] = key
            upstream = await self.forward(
                campaign,
                "submit",
                path + ("?next=true" if same_campaign else ""),
                who.labeler,
                body=body,
                headers=headers,
                retry=key is not None,
            )
        if upstream.status is None:
            return self.unreachable(campaign, upstream)
        if upstream.status in (200, 201, 404, 409):
            self.state.done(who.labeler, campaign, item_id)
        if upstream.status not in (200, 201):
            return upstream.relayed()
        receipt = upstream.parsed()
        receipt.update(_routed_ids(campaign, item_id))
        if with_next:
            receipt["next"] = await self._next_task(who, campaign, receipt.get("next"))
        else:
            receipt.pop("next", None)
        return json_response(receipt, upstream.status)

    async def _next_task(
        self, who: SignedIn, campaign: str, forwarded: Any
    ) -> dict[str, Any] | None:
        if isinstance(forwarded, dict):
            self.metrics.claimed(campaign, "leased")
            return self._routed_task(who.labeler, campaign, forwarded, self.clock())
        response = await self.routed_claim(who)
        if response.status == 200 and isinstance(response.body, bytes):
            task: dict[str, Any] = orjson.loads(response.body)
            return task
        # Nothing leased (no work, capacity, a refusal): the next claim says why.
        return None

    # --- the campaigns' documents (the labeling page renders each task with its own) ------

    async def campaign_document(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/campaigns/{campaign}: that campaign's worker's GET /v1/campaign, asked
        with its service token for the signed-in labeler; its answer relayed as it is."""
        who = await self.sign_in(request)
        campaign = request.match_info["campaign"]
        if campaign not in self.state.campaigns:
            return problem(
                404,
                "unknown-campaign",
                f"campaign {campaign!r} is not one of this pool's: "
                f"{', '.join(sorted(self.state.campaigns)) or 'none'}",
                campaign=campaign,
            )
        assert self._session is not None
        url = URL(self._base[campaign] + "/v1/campaign", encoded=True)
        sent = {"Authorization": self._auth[campaign], ON_BEHALF_OF_HEADER: who.labeler}
        started = time.perf_counter()
        upstream = Upstream(None)
        for attempt in (1, 2):
            try:
                async with self._session.get(url, headers=sent) as response:
                    upstream = Upstream(
                        response.status,
                        await response.read(),
                        response.headers.get("Content-Type", ""),
                        response.headers,
                    )
                    break
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                upstream = Upstream(None, error=f"{type(err).__name__}: {err}")
                # A pooled connection the worker closed as it was reused: a read, so once
                # more on a fresh one.
                if not (isinstance(err, aiohttp.ServerDisconnectedError) and attempt == 1):
                    break
        self.metrics.upstream.labels(campaign, "campaign").observe(time.perf_counter() - started)
        if upstream.status is None:
            return self.unreachable(campaign, upstream)
        return upstream.relayed()

    # --- reading ------------------------------------------------------------------------

    async def me(self, request: web.Request) -> web.StreamResponse:
        who = await self.sign_in(request)
        now = self.clock()
        labeler = self.state.labeler(who.labeler, who.groups, now)
        leases = self.state.leases_of(who.labeler, now)
        return json_response(
            {
                "labeler": who.labeler,
                "groups": list(who.groups),
                "skills": sorted(labeler.skills),
                "leases": leases,
                "activeLeases": sum(leases.values()),
                "maxLeases": self.state.max_leases,
                "blockedIn": sorted(labeler.blocked_in),
            }
        )

    async def pool(self, request: web.Request) -> web.StreamResponse:
        now = self.clock()
        return json_response(
            {
                "pool": self.state.config.pool,
                "namespace": self.state.config.namespace,
                "activeLabelers": self.state.active_labelers(now, ACTIVE_WINDOW_SECONDS),
                "campaigns": [
                    {
                        "name": v.name,
                        "priority": v.priority,
                        "weight": v.weight,
                        "served": v.served,
                        "usage": round(v.usage, 3),
                        "nominalShare": v.share.nominal,
                        "actualShare": v.share.actual,
                        "hasWork": v.has_work,
                        "labelersActive": v.labelers_active,
                    }
                    for v in self.state.view(now)
                ],
            }
        )

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        if self._session is None or self._session.closed:
            return problem(503, "not-ready", "not ready: the upstream session is not open")
        return json_response({"status": "ready", "campaigns": len(self.state.campaigns)})

    async def prometheus(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=self.metrics.exposition(),
            headers={"Content-Type": self.metrics.content_type},
        )


def _routed_ids(campaign: str, item_id: str) -> dict[str, str]:
    return {"itemId": task_id(campaign, item_id), "campaign": campaign}


def capacity_problem(full: CapacityFull) -> web.Response:
    return problem(
        429,
        "quota-exceeded",
        f"you hold {full.held} tasks across the pool's campaigns, the pool's limit "
        f"(capacity.maxLeasesPerLabeler {full.limit}): submit or release one first",
        headers={"Retry-After": str(full.retry_after)},
        reason="max_leases_per_labeler",
        retryAfter=full.retry_after,
    )


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (unknown path, wrong method, body too large) and the
    responses handlers raise, as problems."""
    try:
        return await handler(request)
    except web.HTTPException as err:
        if err.status < 400 or (err.content_type or "").startswith(PROBLEM_JSON):
            raise
        detail = {
            404: f"no such endpoint: {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
            413: f"the body is larger than {MAX_BODY_BYTES} bytes",
        }.get(err.status, err.reason)
        kind = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(
            err.status, "invalid-request"
        )
        return problem(err.status, kind, detail)
    except Refused as refused:
        return refused.response
