"""One reconcile pass of a campaign: topics and schema (at once), then workers, each
observed first.

A pass ends in one status write with a verdict per component. Three kinds of trouble:
  - a backend is unreachable: the component's condition says so (Unknown, with reason
    KafkaUnavailable / PostgresUnavailable), observedGeneration stays, and the pass is
    retried with backoff (kopf.TemporaryError) until the backend answers;
  - a person must act (bad labelSchema, missing tokens Secret, partition decrease):
    Stalled=True with the reason, observedGeneration advances (the generation was fully
    judged), and only a spec change - or, for a Secret that may appear, a slow retry -
    brings the next pass;
  - otherwise the world now matches the spec and observedGeneration advances.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from labelops.api.backend_state import RoleChanges, Topic
from labelops.api.campaign import AutoscalingMode, CampaignSpec, CampaignStatus, Topics
from labelops.api.tasktypes import check_label_schema
from labelops.api.worker_configmap import PASSWORD_KEY
from labelops.clients.errors import BackendUnavailable, KafkaUnavailable
from labelops.clients.kube import FIELD_MANAGER
from labelops.operator import autoscaling, pass_scope, plan
from labelops.operator.conditions import (
    PERMANENT,
    SCHEMA_READY,
    STALLED,
    TARGET_MET,
    TOPICS_READY,
    WORKERS_READY,
    Reason,
    Verdict,
    not_stalled,
)
from labelops.operator.context import OperatorContext
from labelops.operator.diff import diff_database, diff_topics
from labelops.operator.kafka_users import converge_kafka_access
from labelops.operator.metrics import PASS_STEP, pass_step
from labelops.operator.pool_membership import sync_member
from labelops.operator.progress_math import target_met
from labelops.operator.reading_changes import reading_changes
from labelops.operator.status_writer import StatusUpdate, now_utc
from labelops.operator.token_sync import sync_tokens
from labelops.store.summaries import CampaignReading

log = logging.getLogger(__name__)

# Kafka applies metadata changes asynchronously; a pass waits this long to see them.
TOPIC_SETTLE_SECONDS = 5.0
# A missing Secret may be created any moment; look again this often.
SECRET_RETRY_SECONDS = 20.0
# Kafka did not report applied changes within TOPIC_SETTLE_SECONDS: look again soon.
PROGRESSING_RETRY_SECONDS = 3.0


def backoff(retry: int) -> float:
    """1, 2, 4, ... 30 seconds between passes while a backend is unreachable."""
    return float(min(30, 2 ** min(retry, 5)))


@dataclass
class Pass:
    """What one pass found so far; written even when the pass stops early."""

    ref: plan.CampaignRef
    verdicts: list[Verdict] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    step: str = TOPICS_READY
    retry_after: float | None = None
    complete: bool = False
    # set once the worker Deployment was applied: WorkersReady comes from its live state
    workers_deployment: str | None = None
    drop: tuple[str, ...] = ()
    # when the pass carries the campaign's first progress reading (reading_changes.py)
    read_at: dt.datetime | None = None

    def stall(self, reason: str, message: str) -> None:
        """A problem of the spec itself: nothing to provision until it changes."""
        self.verdicts.append(Verdict.true(STALLED, reason, message))
        self.complete = True

    def update(self) -> StatusUpdate:
        verdicts = list(self.verdicts)
        if self.complete and not any(v.type == STALLED for v in verdicts):
            # A component that needs a person (NotSupported, SecretNotFound) stalls the whole.
            problems = [v for v in verdicts if v.reason in PERMANENT]
            if problems:
                verdicts.append(Verdict.true(STALLED, problems[0].reason, problems[0].message))
            else:
                verdicts.append(not_stalled())
        return StatusUpdate(
            verdicts=tuple(verdicts),
            observed_generation=self.ref.generation if self.complete else None,
            fields=dict(self.fields),
            workers_deployment=self.workers_deployment,
            drop_conditions=self.drop,
        )


async def _own_child(
    ctx: OperatorContext, api_version: str, kind: str, namespace: str, name: str
) -> dict[str, Any] | None:
    """A child the spec no longer wants, read to delete it if it is the campaign's."""
    if pass_scope.never_provisioned():
        # Remembered as missing, so the resyncs to come need not look either.
        ctx.kube.assume_missing(api_version, kind, namespace, name)
        return None
    return await ctx.kube.get(api_version, kind, namespace, name, ours=True)


async def reconcile(
    ctx: OperatorContext, body: Mapping[str, Any], retry: int = 0, created: bool = False
) -> None:
    """Bring one campaign's world to its spec and write the status; raise to be retried.

    created: the pass of the create handler (pass_scope.py)."""
    ref = plan.CampaignRef.from_body(body)
    async with ctx.lock(ref):
        status = body.get("status") or {}
        if status.get("observedGeneration") != ref.generation:
            # Say "Reconciling" before the work, so GitOps tools never read a new
            # generation as healthy from an old status (nor a new campaign from no status:
            # kstatus calls that Current). Before the wait for a pass slot too: with a
            # thousand campaigns applied at once that wait is minutes.
            with pass_step("status"):
                await ctx.status.write(ref.namespace, ref.name, StatusUpdate())
        arrived = time.perf_counter()
        async with ctx.passes:
            PASS_STEP.labels("waiting").observe(time.perf_counter() - arrived)
            pass_scope.begin(status.get("observedGeneration"), created, retry)
            await _pass(ctx, body, ref, retry)


async def _pass(
    ctx: OperatorContext, body: Mapping[str, Any], ref: plan.CampaignRef, retry: int
) -> None:
    state = Pass(ref)
    try:
        await _run(ctx, body, state)
    except BackendUnavailable as err:
        reason = (
            Reason.KAFKA_UNAVAILABLE
            if isinstance(err, KafkaUnavailable)
            else Reason.POSTGRES_UNAVAILABLE
        )
        state.verdicts.append(Verdict.unknown(state.step, reason, str(err)))
        await ctx.status.write(ref.namespace, ref.name, state.update())
        raise kopf.TemporaryError(str(err), delay=backoff(retry)) from err
    with pass_step("status"):
        await ctx.status.write(ref.namespace, ref.name, state.update())
    if state.read_at is not None and "progress" in state.fields:
        ctx.tracker(ref).last_written = state.read_at
    ctx.pass_done(ref)
    if state.retry_after is not None:
        raise kopf.TemporaryError("not converged yet", delay=state.retry_after)


async def _run(ctx: OperatorContext, body: Mapping[str, Any], state: Pass) -> None:
    ref = state.ref
    try:
        spec = CampaignSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        # The API server validates the same schema; reaching this means the CRD is older
        # than the operator. Say which field, and wait for a spec change.
        state.stall(Reason.INVALID_SPEC, _first_error(err))
        return
    violation = check_label_schema(spec.task)
    if violation is not None:
        state.stall(
            Reason.INVALID_SPEC,
            f"{violation.pointer}: {violation.message} (spec.task.labelSchema must be a "
            "valid JSON Schema, draft 2020-12)",
        )
        return
    # Checked before anything is provisioned: nothing runs an image the operator may not
    # run, and no worker starts that its connection limit could not serve.
    for reason, refusal in (
        (Reason.IMAGE_NOT_ALLOWED, plan.image_problem(spec, ctx.workers)),
        (Reason.CONNECTION_LIMIT_TOO_SMALL, plan.connection_limit_problem(spec)),
    ):
        if refusal is not None:
            state.stall(reason, refusal)
            return

    names = ref.names
    state.fields.update(
        topics=Topics(**names.topics()),
        schema_=names.schema,
        database_secret=names.database_secret,
    )

    # Kafka's side and PostgreSQL's need nothing of each other: run at once, a pass waits
    # for the slower of the two instead of both. Each is judged on its own: a backend that
    # is down is reported on its own condition, and what the other side did still counts.
    kafka_side, database_side = await asyncio.gather(
        _converge_kafka(ctx, ref, spec), _converge_schema(ctx, ref, spec), return_exceptions=True
    )
    if not isinstance(database_side, BaseException):
        state.verdicts.append(database_side[0])
    if isinstance(kafka_side, BaseException):
        state.step = TOPICS_READY
        raise kafka_side
    state.verdicts.append(kafka_side)
    state.step = SCHEMA_READY  # and after it: progress is read from the schema
    if isinstance(database_side, BaseException):
        raise database_side
    topics, (_, dsn) = kafka_side, database_side

    try:
        status = CampaignStatus.model_validate(body.get("status") or {})
    except ValueError:
        status = CampaignStatus()  # unreadable: the status writer rebuilds it
    reading: CampaignReading | None = None
    if status.progress is None:
        # Never read yet: the whole first reading goes out with this pass's status write,
        # rather than in a write of its own from the progress loop a moment later (one
        # PATCH and one watch event less for every new campaign). Labeler blocks in it are
        # left to the loop, whose next read starts where this one did.
        tracker = ctx.tracker(ref)
        reading = await ctx.postgres.read_campaign(
            names.schema, tracker.blocks.since(status.last_progress_at)
        )
        counts = None if reading is None else reading.counts
    else:
        counts = await ctx.postgres.read_progress(names.schema)
    met = counts is not None and target_met(counts, spec.target)
    reopened = 0
    if met:
        # No worker runs to reopen what a larger target.labelsPerItem reopens: do it here,
        # so a raised target brings the workers back instead of staying Completed.
        reopened = await ctx.postgres.sync_target(
            names.role, names.schema, plan.worker_config(ref, spec)
        )
        if reopened:
            log.info("%s: target.labelsPerItem grew, %d items reopened", names.key, reopened)
            counts = await ctx.postgres.read_progress(names.schema)
            met = counts is not None and target_met(counts, spec.target)
    if reading is not None and not reopened:
        state.read_at = now_utc()
        changes = reading_changes(
            ctx.tracker(ref), status, spec, ref.generation, reading, state.read_at
        )
        state.fields.update(changes.fields)
        state.verdicts.extend(changes.verdicts)
        state.drop = changes.drop
    completed = counts.items_completed if counts is not None else 0
    if met:
        state.verdicts.append(
            Verdict.true(
                TARGET_MET,
                Reason.TARGET_MET,
                f"{completed}/{spec.target.items} items completed; workers scaled to 0",
            )
        )
    else:
        state.verdicts.append(
            Verdict.false(
                TARGET_MET, Reason.LABELING, f"{completed}/{spec.target.items} items completed"
            )
        )
    state.step = WORKERS_READY
    with pass_step("workers"):
        problem = await converge_workers(ctx, ref, spec, met, dsn)
        await converge_learner(ctx, ref, spec, plan.desired_learner_replicas(spec, met))
    if problem is None:
        state.workers_deployment = names.worker
    else:
        state.verdicts.append(problem)
        state.retry_after = SECRET_RETRY_SECONDS
    if topics.reason == Reason.PROGRESSING:
        state.retry_after = PROGRESSING_RETRY_SECONDS
    state.complete = True


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    where = "spec." + ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}"


async def _converge_kafka(
    ctx: OperatorContext, ref: plan.CampaignRef, spec: CampaignSpec
) -> Verdict:
    with pass_step("topics"):
        topics = await converge_topics(ctx, plan.desired_topics(ref.names, spec))
    # Before any pod starts: its Kafka Secret must exist, and its user carry the ACLs.
    with pass_step("kafka-access"):
        await converge_kafka_access(ctx, ref)
    return topics


async def _converge_schema(
    ctx: OperatorContext, ref: plan.CampaignRef, spec: CampaignSpec
) -> tuple[Verdict, str]:
    with pass_step("database"):
        return await converge_database(ctx, ref, spec)


# --- topics -----------------------------------------------------------------------------


async def converge_topics(ctx: OperatorContext, desired: list[Topic]) -> Verdict:
    names = [t.name for t in desired]
    observed = await ctx.kafka.describe(names)
    changes = diff_topics(desired, observed)
    if changes.refusals:
        return Verdict.false(
            TOPICS_READY,
            Reason.NOT_SUPPORTED,
            "; ".join(changes.refusals) + ". The live topics were left unchanged.",
        )
    if not changes.empty:
        await ctx.kafka.create(changes.create)
        await ctx.kafka.grow_partitions(changes.grow_partitions)
        await ctx.kafka.set_configs(changes.set_configs)
        if not await _topics_settled(ctx, desired):
            return Verdict.false(
                TOPICS_READY, Reason.PROGRESSING, "Kafka has not reported the changes yet"
            )
    first = desired[0]
    return Verdict.true(
        TOPICS_READY,
        Reason.TOPICS_IN_SYNC,
        f"{', '.join(names)}: {first.partitions} partitions, replication factor "
        f"{first.replication_factor}, retention.ms {first.configs['retention.ms']}",
    )


async def _topics_settled(ctx: OperatorContext, desired: list[Topic]) -> bool:
    """Wait until Kafka reports what was just applied, so the verdict is not a guess."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TOPIC_SETTLE_SECONDS
    delay = 0.05
    while True:
        observed = await ctx.kafka.describe([t.name for t in desired])
        if diff_topics(desired, observed).empty:
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


# --- schema -----------------------------------------------------------------------------


async def converge_database(
    ctx: OperatorContext, ref: plan.CampaignRef, spec: CampaignSpec
) -> tuple[Verdict, str]:
    names = ref.names
    desired = plan.desired_database(names, spec)
    existing = (
        None
        if pass_scope.just_created()
        else await ctx.kube.get("v1", "Secret", ref.namespace, names.database_secret, ours=True)
    )
    stored = ((existing or {}).get("data") or {}).get(PASSWORD_KEY)
    password = base64.b64decode(stored).decode() if stored else secrets.token_urlsafe(24)
    dsn = plan.worker_dsn(desired, password, ctx.workers.postgres)
    # The Secret first: a password must be stored before any role carries it, or a crash
    # in between would leave a role nobody knows the password of.
    await ctx.kube.apply(
        plan.database_secret(ref, desired, password, dsn, ctx.workers.postgres.ca_pem)
    )

    observed = await ctx.postgres.observe(desired.role, desired.schema)
    changes = diff_database(desired, observed, password_is_new=stored is None)
    if changes != RoleChanges():
        await ctx.postgres.apply(
            desired.role, desired.schema, desired.connection_limit, password, changes
        )
    applied = await ctx.postgres.migrate(desired.role, desired.schema)
    if applied:
        log.info("%s: applied migrations %s", names.key, ", ".join(applied))
    return (
        Verdict.true(
            SCHEMA_READY,
            Reason.SCHEMA_MIGRATED,
            f"schema {desired.schema} owned by role {desired.role} (connection limit "
            f"{desired.connection_limit}), migrations up to date",
        ),
        dsn,
    )


# --- workers ----------------------------------------------------------------------------


async def converge_workers(
    ctx: OperatorContext, ref: plan.CampaignRef, spec: CampaignSpec, met: bool, dsn: str
) -> Verdict | None:
    """Apply the worker objects; a verdict only when they cannot be applied.

    Whether the workers are ready is read from the live Deployment by the status writer.
    """
    pool_env: list[dict[str, Any]] = []
    if spec.labelers.pool_ref is not None:
        membership = await sync_member(ctx, ref, spec)
        if membership.problem is not None:
            return membership.problem
        pool_env = membership.env
    else:
        own = await _converge_own_tokens(ctx, ref, spec)
        if own is not None:
            return own
    pool = spec.labelers.pool_ref.name if spec.labelers.pool_ref is not None else None
    keda_missing = autoscaling.keda_missing(spec, await _keda_served(ctx, spec))
    if keda_missing is not None:
        return Verdict.false(WORKERS_READY, Reason.NOT_SUPPORTED, keda_missing)
    # Independent of each other, all needed before the Deployment: sent at once, so a pass
    # waits for one round trip to a busy API server instead of four or five.
    await asyncio.gather(
        ctx.kube.apply(plan.config_map(ref, spec)),
        ctx.kube.apply(plan.worker_service(ref)),
        *(ctx.kube.apply(p) for p in plan.network_policies(ref, ctx.workers, pool)),
        _converge_quota(ctx, ref, spec),
    )
    # Not the tokens: workers follow their digests in the database without a restart.
    pod_hash = plan.config_hash(
        plan.worker_config_json(ref, spec, with_generation=False),
        dsn,
        *(json.dumps(variable, sort_keys=True) for variable in pool_env),
    )
    scale = autoscaling.scaling(
        ref.names,
        ref.metadata(ref.names.worker),
        spec,
        met,
        ctx.workers.kafka_bootstrap,
        ctx.workers.kafka_access,
    )
    deployment = plan.worker_deployment(ref, spec, ctx.workers, scale.replicas, pod_hash, pool_env)
    if scale.replicas is not None:
        # Ours again (forced apply): the autoscaler goes first, so it cannot scale it back.
        await _converge_autoscaler(ctx, ref, scale)
        ctx.status.seen_deployment(await ctx.kube.apply(deployment))
        return None
    live = await ctx.kube.get("apps/v1", "Deployment", ref.namespace, ref.names.worker)
    if live is None:
        # Created at minReplicas, then handed over below like any Deployment of ours.
        live = await ctx.kube.apply(
            plan.worker_deployment(ref, spec, ctx.workers, _min_replicas(spec), pod_hash, pool_env)
        )
    if autoscaling.owns_replicas(live, FIELD_MANAGER):
        await ctx.kube.apply(autoscaling.replicas_handover(live), autoscaling.HANDOVER_MANAGER)
    ctx.status.seen_deployment(await ctx.kube.apply(deployment))
    await _converge_autoscaler(ctx, ref, scale)
    return None


def _min_replicas(spec: CampaignSpec) -> int:
    auto = spec.workers.autoscaling
    return auto.min_replicas if auto is not None else spec.workers.replicas


# Whether the API server serves KEDA's ScaledObjects: once seen, trusted this long; not
# seen, asked again on each pass of a keda campaign (every SECRET_RETRY_SECONDS).
KEDA_RECHECK_SECONDS = 300.0
_keda_seen_at: dict[int, float] = {}


async def _keda_served(ctx: OperatorContext, spec: CampaignSpec) -> bool:
    auto = spec.workers.autoscaling
    if auto is None or auto.mode != AutoscalingMode.KEDA:
        return False
    now = asyncio.get_running_loop().time()
    seen = _keda_seen_at.get(id(ctx.kube))
    if seen is not None and now - seen < KEDA_RECHECK_SECONDS:
        return True
    if await ctx.kube.serves(autoscaling.KEDA_API_VERSION, autoscaling.SCALED_OBJECTS):
        _keda_seen_at[id(ctx.kube)] = now
        return True
    _keda_seen_at.pop(id(ctx.kube), None)
    return False


_AUTOSCALER_KINDS = (
    (autoscaling.HPA_API_VERSION, "HorizontalPodAutoscaler", "worker"),
    (autoscaling.KEDA_API_VERSION, "ScaledObject", "worker"),
    (autoscaling.KEDA_API_VERSION, "TriggerAuthentication", "kafka_secret"),
)


async def _converge_autoscaler(
    ctx: OperatorContext, ref: plan.CampaignRef, scale: autoscaling.Scaling
) -> None:
    """Apply the desired autoscaler objects; delete the other kinds' (only ours)."""
    wanted = {(o["apiVersion"], o["kind"]) for o in scale.autoscaler}
    for obj in scale.autoscaler:
        await ctx.kube.apply(obj)
    for api_version, kind, name_of in _AUTOSCALER_KINDS:
        if (api_version, kind) in wanted:
            continue
        if api_version == autoscaling.KEDA_API_VERSION and not _keda_seen_at.get(id(ctx.kube)):
            continue  # never made without KEDA served
        name = getattr(ref.names, name_of)
        live = await _own_child(ctx, api_version, kind, ref.namespace, name)
        owners = ((live or {}).get("metadata") or {}).get("ownerReferences") or []
        if any(owner.get("uid") == ref.uid for owner in owners):
            await ctx.kube.delete(api_version, kind, ref.namespace, name)
            log.info("%s: %s %s deleted (workers: %s)", ref.names.key, kind, name, scale.replicas)


async def _converge_own_tokens(
    ctx: OperatorContext, ref: plan.CampaignRef, spec: CampaignSpec
) -> Verdict | None:
    """The campaign's own tokens Secret (spec.labelers.tokenSecretRef) into its schema."""
    tokens_name = plan.tokens_secret_name(spec)
    tokens = await ctx.kube.get("v1", "Secret", ref.namespace, tokens_name)
    # Before any check returns: a Secret that is gone or refused leaves nobody signed in.
    tokens_problem = await sync_tokens(ctx, ref, spec, tokens)
    if tokens is None:
        return Verdict.false(
            WORKERS_READY,
            Reason.SECRET_NOT_FOUND,
            f"spec.labelers.tokenSecretRef: Secret {ref.namespace}/{tokens_name} not found; "
            "create it with one key per labeler id and the labeler's token as value",
        )
    not_opted_in = plan.token_secret_problem(ref, spec, tokens)
    if not_opted_in is not None:
        return Verdict.false(WORKERS_READY, Reason.TOKEN_SECRET_NOT_OPTED_IN, not_opted_in)
    if tokens_problem is not None:
        return Verdict.false(WORKERS_READY, Reason.INVALID_TOKEN_SECRET, tokens_problem)
    return None


async def converge_learner(
    ctx: OperatorContext, ref: plan.CampaignRef, spec: CampaignSpec, replicas: int
) -> None:
    """The built-in learner's Deployment: applied while spec.model.learner is builtin,
    deleted (only ours) once it is removed from the spec."""
    desired = plan.learner_deployment(ref, spec, ctx.workers, replicas)
    if desired is not None:
        await ctx.kube.apply(desired)
        return
    name = plan.learner_name(ref)
    live = await _own_child(ctx, "apps/v1", "Deployment", ref.namespace, name)
    owners = ((live or {}).get("metadata") or {}).get("ownerReferences") or []
    if any(owner.get("uid") == ref.uid for owner in owners):
        await ctx.kube.delete("apps/v1", "Deployment", ref.namespace, name)
        log.info("%s: learner removed from the spec, Deployment %s deleted", ref.names.key, name)


async def _converge_quota(ctx: OperatorContext, ref: plan.CampaignRef, spec: CampaignSpec) -> None:
    quota = plan.resource_quota(ref, spec)
    if quota is not None:
        await ctx.kube.apply(quota)
        return
    name = ref.names.resource_quota
    live = await _own_child(ctx, "v1", "ResourceQuota", ref.namespace, name)
    owners = ((live or {}).get("metadata") or {}).get("ownerReferences") or []
    if any(owner.get("uid") == ref.uid for owner in owners):
        # quotas.kubernetes was removed from the spec: remove the quota we made, only ours.
        await ctx.kube.delete("v1", "ResourceQuota", ref.namespace, name)
