"""The one writer of LabelingCampaign status.

Handlers, timers and watches never patch status themselves: they describe what they found
as a StatusUpdate and hand it here. The writer reads the live object, merges the update,
derives Ready / Reconciling and the phase (conditions.py), patches the status subresource
only when something changed, and posts an Event for each transition that is news
(conditions.newsworthy: trouble, recovery, Ready, the campaign's outcomes).

Writes for one campaign are serialised by a lock and guarded by resourceVersion, so a
reconcile and the Deployment watch never overwrite each other's conditions.

Reads cost the API server nothing in the common case: the writer keeps the newest copy it has
seen of each campaign (its own patch's answer, or a watch event, handlers/campaign_watch.py)
and of each worker Deployment (a watch event, or the operator's own apply), and reads the API
server only for what it has not seen, or after a conflict. A thousand campaigns becoming
Ready at once would otherwise read each campaign and its Deployment for every write.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

import kopf

from labelops.api.campaign import CONDITION_TYPES, CampaignStatus
from labelops.clients.kube import Conflict, KubeClient
from labelops.operator import metrics
from labelops.operator.conditions import (
    SCHEMA_READY,
    WORKERS_READY,
    Transition,
    Verdict,
    apply_verdicts,
    phase_of,
    summary_verdicts,
    transitions,
)
from labelops.operator.rollout import workers_verdict

log = logging.getLogger(__name__)

MAX_CONFLICT_RETRIES = 5

EventSink = Callable[[Mapping[str, Any], str, str, str], None]


@dataclass(frozen=True)
class StatusUpdate:
    verdicts: tuple[Verdict, ...] = ()
    # Set only by a reconcile pass that reached a verdict for this generation.
    observed_generation: int | None = None
    # Other CampaignStatus fields by their Python name (topics, schema_, progress, ...).
    fields: Mapping[str, Any] = field(default_factory=dict)
    # Name of the worker Deployment whose live state decides WorkersReady. Read inside the
    # write, under the campaign's lock: whoever writes last has read last, so a slower
    # reconcile can never overwrite a newer rollout state seen by the Deployment watch.
    workers_deployment: str | None = None
    # Conditions that no longer apply (ModelTrusted once model.autoAccept is removed).
    drop_conditions: tuple[str, ...] = ()


def now_utc() -> dt.datetime:
    # metav1.Time has second precision; keep what we write equal to what we read back.
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _parse(current: Mapping[str, Any]) -> CampaignStatus:
    try:
        return CampaignStatus.model_validate(current)
    except ValueError:
        # A status we cannot read (hand-edited, older operator) is rebuilt from scratch.
        log.warning("ignoring unreadable status %r", current)
        return CampaignStatus()


def _dump(status: CampaignStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def render_status(
    current: Mapping[str, Any],
    generation: int,
    paused: bool,
    update: StatusUpdate,
    now: dt.datetime,
) -> tuple[dict[str, Any] | None, list[Transition]]:
    """The new status (None when nothing changed) and the condition transitions it makes."""
    before = _parse(current)
    observed = (
        update.observed_generation
        if update.observed_generation is not None
        else before.observed_generation
    )
    kept = [c for c in before.conditions if c.type not in update.drop_conditions]
    conditions = apply_verdicts(kept, update.verdicts, generation, now)
    summary = summary_verdicts(conditions, generation, observed)
    conditions = apply_verdicts(conditions, summary, generation, now)
    order = {t: i for i, t in enumerate(CONDITION_TYPES)}
    conditions.sort(key=lambda c: order.get(c.type, len(order)))
    after = before.model_copy(
        update={
            **update.fields,
            "conditions": conditions,
            "observed_generation": observed,
            "phase": phase_of(conditions, paused, observed),
        }
    )
    rendered = _dump(after)
    if rendered == _dump(before):
        return None, []
    return rendered, transitions(before.conditions, conditions)


def _version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def newer_version(candidate: str, known: str | None) -> bool:
    """Whether resourceVersion candidate is later than known (None: nothing known).

    resourceVersions are etcd revisions, increasing integers; one that is not (an API server
    with another storage) counts as newer, which only costs a conflict and a fresh read."""
    if known is None:
        return True
    if candidate.isdigit() and known.isdigit():
        return int(candidate) >= int(known)
    return True


def newer(candidate: Mapping[str, Any], known: Mapping[str, Any] | None) -> bool:
    """Whether candidate is a later version of the object than known (None: nothing known)."""
    return newer_version(_version(candidate), None if known is None else _version(known))


# What workers_verdict reads of a Deployment, and all that is kept of one.
_DEPLOYMENT_METADATA = ("name", "namespace", "generation", "resourceVersion")


@dataclass(frozen=True)
class _Kept:
    """A campaign as kept in memory: its resourceVersion, and the object as JSON text (a
    dict costs several times the memory) without managedFields and annotations (Kopf's copy
    of the last handled spec), which nothing here reads. What the progress loop asks of
    every campaign every second is kept beside it, so answering costs no parsing."""

    version: str
    text: str
    generation: int | None = None
    schema_ready: bool = False
    deleting: bool = False
    # WorkersReady as written: (status, reason, message, observedGeneration), None if absent.
    workers: tuple[Any, ...] | None = None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> _Kept:
        meta = body.get("metadata") or {}
        kept = {k: v for k, v in body.items() if k != "metadata"}
        kept["metadata"] = {
            k: v for k, v in meta.items() if k not in ("managedFields", "annotations")
        }
        conditions = (body.get("status") or {}).get("conditions") or []
        workers = next((c for c in conditions if c.get("type") == WORKERS_READY), None)
        return cls(
            _version(body),
            json.dumps(kept, separators=(",", ":"), default=str),
            generation=meta.get("generation"),
            schema_ready=any(
                c.get("type") == SCHEMA_READY and c.get("status") == "True" for c in conditions
            ),
            deleting=bool(meta.get("deletionTimestamp")),
            workers=None
            if workers is None
            else tuple(
                workers.get(k) for k in ("status", "reason", "message", "observedGeneration")
            ),
        )

    def body(self) -> dict[str, Any]:
        return dict(json.loads(self.text))


@dataclass(frozen=True)
class KnownCampaign:
    """What the progress loop needs to know of a campaign without reading its body."""

    key: str  # namespace/name
    generation: int | None
    schema_ready: bool
    deleting: bool


def post_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    # kopf.event, not kopf.info: posting.level is WARNING so that kopf's own log lines stay
    # out of Events, while every condition transition must still become one.
    kopf.event(
        kopf.Body(cast(kopf.RawBody, dict(body))), type=type_, reason=reason, message=message
    )


class StatusWriter:
    def __init__(self, kube: KubeClient, sink: EventSink = post_event) -> None:
        self._kube = kube
        self._sink = sink
        self._locks: dict[str, asyncio.Lock] = {}
        # The resourceVersion of each campaign as last seen current here (our own patch's
        # answer, or a current read): a cached read at that version is up to date.
        self._current: dict[str, str] = {}
        # The newest copy seen of each campaign and worker Deployment (see the docstring).
        self._campaigns: dict[str, _Kept] = {}
        self._deployments: dict[str, dict[str, Any]] = {}

    def forget(self, namespace: str, name: str) -> None:
        self._locks.pop(f"{namespace}/{name}", None)
        self._current.pop(f"{namespace}/{name}", None)
        self._campaigns.pop(f"{namespace}/{name}", None)
        metrics.forget_campaign(namespace, name)

    def seen_campaign(self, body: Mapping[str, Any]) -> None:
        """A campaign as a watch event delivered it (kept if newer than what is known)."""
        meta = body.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        known = self._campaigns.get(key)
        if newer_version(_version(body), None if known is None else known.version):
            self._campaigns[key] = _Kept.of(body)

    def unseen_campaign(self, namespace: str, name: str) -> None:
        self._campaigns.pop(f"{namespace}/{name}", None)

    def known_campaigns(self) -> list[KnownCampaign]:
        """Every campaign seen and not deleted, as last seen."""
        return [
            KnownCampaign(key, kept.generation, kept.schema_ready, kept.deleting)
            for key, kept in self._campaigns.items()
        ]

    def known_campaign(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The newest copy seen of a campaign; None: not seen by this process yet (its
        create or resume pass is still to come)."""
        known = self._campaigns.get(f"{namespace}/{name}")
        return known.body() if known is not None else None

    async def campaign(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The newest copy seen of a campaign, else the watch cache's (None: not found)."""
        known = self._campaigns.get(f"{namespace}/{name}")
        if known is not None:
            return known.body()
        return await self._kube.get_campaign(namespace, name, cached=True)

    def seen_deployment(self, body: Mapping[str, Any] | None, deleted: bool = False) -> None:
        """A worker Deployment as a watch event or the operator's own apply returned it."""
        if not body:
            return
        meta = body.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        if deleted:
            self._deployments.pop(key, None)
        elif newer(body, self._deployments.get(key)):
            self._deployments[key] = {
                "metadata": {k: meta.get(k) for k in _DEPLOYMENT_METADATA},
                "spec": {"replicas": (body.get("spec") or {}).get("replicas", 1)},
                "status": copy.deepcopy(dict(body.get("status") or {})),
            }

    def workers_unchanged(self, namespace: str, name: str, deployment: str) -> bool:
        """Whether a write for the worker Deployment would change nothing: the newest copy
        seen of the campaign, which write() believes too once this process has written or
        read it current, already carries the WorkersReady verdict of the newest copy seen
        of the Deployment, for the campaign's generation. Most of a rollout's status events
        move counts WorkersReady does not show; the Deployment watch skips those (parsing,
        rendering and comparing the whole status, a thousand campaigns times five events)."""
        key = f"{namespace}/{name}"
        known = self._campaigns.get(key)
        seen = self._deployments.get(f"{namespace}/{deployment}")
        if known is None or seen is None or key not in self._current or known.workers is None:
            return False
        verdict = workers_verdict(seen)
        written = (verdict.status.value, verdict.reason, verdict.message, known.generation)
        return known.workers == written

    def event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """An Event on the campaign that is not a condition transition (a labeler blocked)."""
        self._sink(body, type_, reason, message)

    async def _with_workers(self, namespace: str, update: StatusUpdate) -> StatusUpdate:
        if update.workers_deployment is None:
            return update
        # The newest copy seen, else from the watch cache: a change not seen yet comes as a
        # watch event, which writes again.
        deployment = self._deployments.get(f"{namespace}/{update.workers_deployment}")
        if deployment is None:
            deployment = await self._kube.get(
                "apps/v1", "Deployment", namespace, update.workers_deployment, cached=True
            )
            self.seen_deployment(deployment)
        return replace(update, verdicts=(*update.verdicts, workers_verdict(deployment)))

    async def write(self, namespace: str, name: str, update: StatusUpdate) -> dict[str, Any] | None:
        """Apply the update; returns the campaign's status afterwards (None if it is gone)."""
        key = f"{namespace}/{name}"
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            for attempt in range(MAX_CONFLICT_RETRIES):
                # The first write for a campaign in this process reads it current (etcd);
                # later first reads are the newest copy seen here, else the watch cache's. A
                # stale copy is harmless when it leads to a patch (guarded by
                # resourceVersion: a conflict, then a current read); when the watch cache's
                # says "nothing to change" it is believed only if it already holds the last
                # status seen current here (our own last patch), else a current read
                # decides. The newest copy seen is never older than our own last patch.
                cached = attempt == 0 and key in self._current
                known = self._campaigns.get(key) if cached else None
                if known is not None:
                    body: dict[str, Any] | None = known.body()
                else:
                    body = await self._kube.get_campaign(namespace, name, cached=cached)
                    if body is None:
                        self._campaigns.pop(key, None)
                        return None
                    if not cached:
                        self.seen_campaign(body)
                assert body is not None
                version = str(body["metadata"].get("resourceVersion", ""))
                current = body.get("status") or {}
                rendered, changes = render_status(
                    current,
                    generation=int(body["metadata"].get("generation", 1)),
                    paused=bool(body.get("spec", {}).get("paused", False)),
                    update=await self._with_workers(namespace, update),
                    now=now_utc(),
                )
                spec = body.get("spec") or {}
                if rendered is None:
                    if cached and known is None and version != self._current.get(key):
                        continue
                    self._current[key] = version
                    metrics.observe_campaign(namespace, name, spec, current)
                    return dict(current)
                try:
                    patched = await self._kube.patch_campaign_status(
                        namespace, name, rendered, version
                    )
                except Conflict:
                    continue
                if patched is None:  # deleted meanwhile (404)
                    self._campaigns.pop(key, None)
                    return None
                self._current[key] = str(
                    ((patched or {}).get("metadata") or {}).get("resourceVersion", "")
                )
                self.seen_campaign(patched)
                metrics.observe_campaign(namespace, name, spec, rendered)
                for change in (c for c in changes if c.news):
                    self._sink(
                        body,
                        "Warning" if change.warning else "Normal",
                        change.event_reason,
                        change.event_message,
                    )
                return rendered
        raise kopf.TemporaryError(
            f"status of {namespace}/{name} kept changing under {MAX_CONFLICT_RETRIES} writes",
            delay=1,
        )
