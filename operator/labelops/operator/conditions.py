"""Conditions in metav1.Condition form and the kstatus summary derived from them.

Reconcile steps report one verdict per component condition (TopicsReady, SchemaReady,
WorkersReady, TargetMet) and whether the campaign is Stalled. Ready and Reconciling are
never set directly: `summarize` derives them, so they cannot disagree with the components.
ModelTrusted (campaigns with model.autoAccept, set by the progress loop from the model's
audits) is informational like TargetMet: an untrusted model sends every item to people,
which is slower but healthy, so it never makes a campaign un-Ready.

kstatus reading (what Flux, Argo CD and `kubectl wait` see):
  - Stalled=True: a person must act (bad spec, missing Secret, unsupported change).
  - Reconciling=True: the operator is still working or waiting on a backend.
  - Ready=True: everything exists as specified for the current generation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from labelops.api.campaign import MODEL_TRUSTED, Condition, ConditionStatus, Phase

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
TOPICS_READY = "TopicsReady"
SCHEMA_READY = "SchemaReady"
WORKERS_READY = "WorkersReady"
TARGET_MET = "TargetMet"

# Ready requires all of these; TargetMet is informational (a completed campaign is healthy).
COMPONENTS = (TOPICS_READY, SCHEMA_READY, WORKERS_READY)


class Reason(StrEnum):
    # healthy
    PROVISIONED = "Provisioned"
    TOPICS_IN_SYNC = "TopicsInSync"
    SCHEMA_MIGRATED = "SchemaMigrated"
    AVAILABLE = "Available"
    SCALED_TO_ZERO = "ScaledToZero"
    TARGET_MET = "TargetMet"
    LABELING = "Labeling"
    AS_EXPECTED = "AsExpected"
    # in progress
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    ROLLING_OUT = "RollingOut"
    DELETING = "Deleting"
    # transient: retried with backoff
    KAFKA_UNAVAILABLE = "KafkaUnavailable"
    POSTGRES_UNAVAILABLE = "PostgresUnavailable"
    # permanent: a person must act
    NOT_SUPPORTED = "NotSupported"
    INVALID_SPEC = "InvalidSpec"
    SECRET_NOT_FOUND = "SecretNotFound"
    IMAGE_NOT_ALLOWED = "ImageNotAllowed"
    TOKEN_SECRET_NOT_OPTED_IN = "TokenSecretNotOptedIn"
    INVALID_TOKEN_SECRET = "InvalidTokenSecret"
    CONNECTION_LIMIT_TOO_SMALL = "ConnectionLimitTooSmall"
    POOL_NOT_FOUND = "PoolNotFound"
    UNKNOWN_SKILL = "UnknownSkill"
    STALLED = "Stalled"
    # LabelerPool (pool_status.py)
    NO_CAMPAIGNS = "NoCampaigns"
    ROUTER_AVAILABLE = "RouterAvailable"
    ROUTER_UNAVAILABLE = "RouterUnavailable"
    # ModelTrusted (campaigns with model.autoAccept)
    TRUSTED = "Trusted"
    CALIBRATING = "Calibrating"
    NO_MODEL_VERSION = "NoModelVersion"
    BRAKED = "Braked"


TRANSIENT = frozenset({Reason.KAFKA_UNAVAILABLE, Reason.POSTGRES_UNAVAILABLE})
PERMANENT = frozenset(
    {
        Reason.NOT_SUPPORTED,
        Reason.INVALID_SPEC,
        Reason.SECRET_NOT_FOUND,
        Reason.IMAGE_NOT_ALLOWED,
        Reason.TOKEN_SECRET_NOT_OPTED_IN,
        Reason.INVALID_TOKEN_SECRET,
        Reason.CONNECTION_LIMIT_TOO_SMALL,
        Reason.POOL_NOT_FOUND,
        Reason.UNKNOWN_SKILL,
    }
)
# Not a fault of the operator or the spec, but on-call should hear of it: a model version
# lost trust and its machine labels since the last passing audit window were withdrawn.
ALARMING = frozenset({Reason.BRAKED})


@dataclass(frozen=True)
class Verdict:
    """One condition as a reconcile step concluded it."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""

    @classmethod
    def true(cls, type_: str, reason: str, message: str = "") -> Verdict:
        return cls(type_, ConditionStatus.TRUE, reason, message)

    @classmethod
    def false(cls, type_: str, reason: str, message: str = "") -> Verdict:
        return cls(type_, ConditionStatus.FALSE, reason, message)

    @classmethod
    def unknown(cls, type_: str, reason: str, message: str = "") -> Verdict:
        return cls(type_, ConditionStatus.UNKNOWN, reason, message)


def not_stalled() -> Verdict:
    return Verdict.false(STALLED, Reason.AS_EXPECTED, "no action needed")


def find(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Iterable[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status is ConditionStatus.TRUE


def apply_verdicts(
    conditions: Sequence[Condition],
    verdicts: Iterable[Verdict],
    generation: int,
    now: dt.datetime,
) -> list[Condition]:
    """Set each verdict's condition; lastTransitionTime moves only when the status changes."""
    by_type = {c.type: c for c in conditions}
    for verdict in verdicts:
        previous = by_type.get(verdict.type)
        keep_time = previous is not None and previous.status == verdict.status
        by_type[verdict.type] = Condition(
            type=verdict.type,
            status=verdict.status,
            reason=verdict.reason,
            message=verdict.message,
            last_transition_time=previous.last_transition_time if keep_time and previous else now,
            observed_generation=generation,
        )
    return list(by_type.values())


def summary_verdicts(
    conditions: Sequence[Condition], generation: int, observed_generation: int | None
) -> tuple[Verdict, Verdict]:
    """Ready and Reconciling, derived from Stalled, the components and observedGeneration."""
    stalled = find(conditions, STALLED)
    if stalled is not None and stalled.status is ConditionStatus.TRUE:
        return (
            Verdict.false(READY, stalled.reason, stalled.message),
            Verdict.false(RECONCILING, Reason.STALLED, "waiting for a change to the campaign"),
        )
    for type_ in COMPONENTS:
        component = find(conditions, type_)
        if component is None:
            message = f"{type_} has not been evaluated yet"
            return (
                Verdict.false(READY, Reason.PENDING, message),
                Verdict.true(RECONCILING, Reason.PENDING, message),
            )
        if component.status is not ConditionStatus.TRUE:
            message = f"{type_}: {component.message}" if component.message else type_
            return (
                Verdict.false(READY, component.reason, message),
                Verdict.true(RECONCILING, component.reason, message),
            )
    if observed_generation != generation:
        message = f"generation {generation} is being reconciled (last done: {observed_generation})"
        return (
            Verdict.false(READY, Reason.PROGRESSING, message),
            Verdict.true(RECONCILING, Reason.PROGRESSING, message),
        )
    message = "topics, schema and workers match the spec"
    return (
        Verdict.true(READY, Reason.PROVISIONED, message),
        Verdict.false(RECONCILING, Reason.PROVISIONED, message),
    )


def phase_of(
    conditions: Sequence[Condition], paused: bool, observed_generation: int | None
) -> Phase:
    if is_true(conditions, STALLED):
        return Phase.FAILED
    if is_true(conditions, TARGET_MET):
        return Phase.COMPLETED
    if paused and observed_generation is not None:
        return Phase.PAUSED
    if is_true(conditions, READY):
        return Phase.RUNNING
    if observed_generation is None and not any(find(conditions, t) for t in COMPONENTS):
        return Phase.PENDING
    return Phase.PROVISIONING


@dataclass(frozen=True)
class Transition:
    """A condition that changed status or reason. Those that are news (newsworthy) become
    Kubernetes Events."""

    condition: Condition
    warning: bool
    # Whether on-call should hear of it (newsworthy); every transition is in the status.
    news: bool = True

    @property
    def event_reason(self) -> str:
        return self.condition.reason

    @property
    def event_message(self) -> str:
        c = self.condition
        text = f"{c.type}={c.status.value}"
        return f"{text}: {c.message}" if c.message else text


WARNING_REASONS = TRANSIENT | PERMANENT | ALARMING
# Conditions whose every step is news: what the campaign achieved or what a model is allowed.
_OUTCOMES = (TARGET_MET, STALLED, MODEL_TRUSTED)


def newsworthy(previous: Condition | None, condition: Condition) -> bool:
    """Whether a transition becomes an Event. A campaign coming up posts one, Ready=True, not
    one per condition on its way (a thousand campaigns applied at once would post ten
    thousand Events, a write to etcd each); trouble and recovery from it are always news.

    - a problem (a warning reason), or the recovery of a condition from one;
    - Ready turning True, or leaving True;
    - TargetMet, Stalled and ModelTrusted once they were seen (their first False is no news);
    - never Reconciling: it mirrors Ready, whose Events already say it.
    """
    if condition.type == RECONCILING:
        return False
    if condition.reason in WARNING_REASONS:
        return True
    if previous is not None and previous.reason in WARNING_REASONS:
        return True
    if condition.type == READY:
        was_true = previous is not None and previous.status is ConditionStatus.TRUE
        return (condition.status is ConditionStatus.TRUE) != was_true
    if condition.type in _OUTCOMES:
        return previous is not None or condition.status is ConditionStatus.TRUE
    return False


def transitions(before: Sequence[Condition], after: Sequence[Condition]) -> list[Transition]:
    old = {c.type: c for c in before}
    found = []
    for condition in after:
        previous = old.get(condition.type)
        if previous is not None and (previous.status, previous.reason) == (
            condition.status,
            condition.reason,
        ):
            continue
        if (
            previous is None
            and condition.type in (RECONCILING, STALLED)
            and (condition.status is ConditionStatus.FALSE)
        ):
            # A first "nothing wrong" says nothing worth an Event.
            continue
        warning = condition.reason in WARNING_REASONS
        found.append(Transition(condition, warning, newsworthy(previous, condition)))
    return found
