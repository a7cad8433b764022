"""The worker's settings, read from the environment the operator's Deployment sets.

Every error names the variable that is wrong and what it should hold, and never echoes a
token: a worker that cannot start says why in its first log line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import TypeAdapter, ValidationError

from labelops.api.environment import ConfigError, validation_reasons
from labelops.api.environment import integer as _integer
from labelops.api.environment import required as _required
from labelops.api.kafka_connection import KafkaConnection, connection_from_env
from labelops.api.labeler_pool import Skill
from labelops.api.pool_router import (
    ENV_OIDC_AUDIENCE,
    ENV_OIDC_GROUPS_CLAIM,
    ENV_OIDC_ISSUER,
    ENV_OIDC_USERNAME_CLAIM,
    ENV_REQUIRED_SKILLS,
)
from labelops.api.worker_configmap import (
    ENV_CAMPAIGN,
    ENV_POSTGRES_DSN,
    ENV_TOKEN_PREFIX,
    WORKER_PORT,
    WorkerConfig,
)
from labelops.identity.oidc import secure_url_problem
from labelops.worker.cpus import usable_cpus

ENV_PORT = "LABELOPS_WORKER_PORT"
ENV_HOST = "LABELOPS_WORKER_HOST"
ENV_THREADS = "LABELOPS_WORKER_THREADS"
ENV_PROCESSES = "LABELOPS_WORKER_PROCESSES"
ENV_RESPONSE_VALIDATION = "LABELOPS_RESPONSE_VALIDATION"
# Set by a worker for the HTTP server processes it starts (see prefork.py), never by hand:
# the listening socket they inherit, and the pid of the worker that started them.
ENV_LISTEN_FD = "LABELOPS_WORKER_LISTEN_FD"
ENV_SUPERVISOR_PID = "LABELOPS_WORKER_SUPERVISOR_PID"

DEFAULT_HOST = "0.0.0.0"  # a pod serves its Service on every interface
# LABELOPS_WORKER_THREADS: the database threads (each with its connection) that the HTTP
# processes of a replica share for what is not a validated label: claims, releases, reads,
# the slow path of a submission. Every HTTP process serves its requests on one event loop
# (server.py), and validated labels go to its group-commit batcher, which has connections
# of its own (batch_writers). With the ingest and relay connections a replica opens
# threads + 2 + 2 connections whether it runs one HTTP process or two, and the default keeps
# two replicas and the operator within the default connectionLimit of 20.
DEFAULT_THREADS = 4
# One HTTP server process per usable core (Python runs one thread at a time per process),
# up to this many: each costs 100 MB or more under load besides the supervisor's, and the
# default worker memory limit is 512Mi. More with LABELOPS_WORKER_PROCESSES (and memory).
MAX_DEFAULT_PROCESSES = 2


class ResponseValidation(StrEnum):
    """What to do when a response does not match the OpenAPI document.

    `log` reports it (log line and metric) and still sends the response, because by then a
    label may already be committed; `strict` turns it into a 500 so tests fail loudly.
    """

    OFF = "off"
    LOG = "log"
    STRICT = "strict"


@dataclass(frozen=True)
class OidcSettings:
    """Labelers may also sign in with this issuer's JWTs (a pool campaign's workers: the
    operator copies the pool's spec.identity.oidc); see worker/oidc_auth.py."""

    issuer: str
    audience: str
    username_claim: str = "sub"
    groups_claim: str = "groups"


@dataclass(frozen=True)
class WorkerSettings:
    campaign: WorkerConfig
    # labeler id -> bearer token, fixed for the worker's lifetime: for a worker run by hand.
    # The operator passes none; its workers read the campaign's token digests from the
    # database and follow their changes (worker/auth.py).
    tokens: Mapping[str, str]
    postgres_dsn: str
    kafka: KafkaConnection
    host: str = DEFAULT_HOST
    port: int = WORKER_PORT
    threads: int = DEFAULT_THREADS
    response_validation: ResponseValidation = ResponseValidation.LOG
    processes: int = 1
    oidc: OidcSettings | None = None
    # The pool's skills this campaign requires: a labeler signing in directly (not through
    # the pool's router, which checked them) must hold every one.
    required_skills: tuple[Skill, ...] = ()
    # Set in the HTTP processes of a multi-process worker.
    listen_fd: int | None = None
    supervisor_pid: int | None = None

    @property
    def connections_per_process(self) -> int:
        """Pool size of each HTTP process of a multi-process worker: they share `threads`
        connections (at least 2 each)."""
        return max(2, math.ceil(self.threads / self.processes))

    @property
    def batch_writers(self) -> int:
        """Batches (of labels or claims) each HTTP process commits at once, one connection
        each: two overlap one batch's commit with the next one's work; with several
        processes their batchers overlap anyway."""
        return max(1, 2 // self.processes)

    @property
    def database_threads(self) -> int:
        """Database threads of this HTTP process."""
        return self.threads if self.processes == 1 else self.connections_per_process


def settings_from_env(environ: Mapping[str, str]) -> WorkerSettings:
    http_process = bool(environ.get(ENV_LISTEN_FD, "").strip())
    return WorkerSettings(
        campaign=campaign_from_env(environ),
        tokens=tokens_from_env(environ),
        postgres_dsn=_required(environ, ENV_POSTGRES_DSN, "a libpq connection string"),
        kafka=connection_from_env(environ),
        host=environ.get(ENV_HOST, DEFAULT_HOST).strip() or DEFAULT_HOST,
        port=_integer(environ, ENV_PORT, WORKER_PORT, low=0, high=65535),
        threads=_integer(environ, ENV_THREADS, DEFAULT_THREADS, low=1, high=256),
        response_validation=_response_validation(environ),
        processes=_integer(
            environ, ENV_PROCESSES, min(usable_cpus(), MAX_DEFAULT_PROCESSES), low=1, high=64
        ),
        oidc=oidc_from_env(environ),
        required_skills=required_skills_from_env(environ),
        listen_fd=_integer(environ, ENV_LISTEN_FD, 0, low=0, high=65535) if http_process else None,
        supervisor_pid=(
            _integer(environ, ENV_SUPERVISOR_PID, 0, low=0, high=2**22) if http_process else None
        ),
    )


def campaign_from_env(environ: Mapping[str, str]) -> WorkerConfig:
    raw = _required(environ, ENV_CAMPAIGN, "the JSON of the campaign's worker ConfigMap")
    try:
        return WorkerConfig.model_validate_json(raw)
    except ValidationError as err:
        raise ConfigError(
            f"{ENV_CAMPAIGN} is not a valid worker config: {validation_reasons(err)}"
        ) from None


def tokens_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """LABELOPS_TOKEN_<labeler id>=<token>: fixed tokens of a worker run by hand (the
    operator's workers get theirs from the campaign's database)."""
    tokens: dict[str, str] = {}
    owner_of: dict[str, str] = {}
    for variable in sorted(environ):
        if not variable.startswith(ENV_TOKEN_PREFIX):
            continue
        labeler = variable.removeprefix(ENV_TOKEN_PREFIX)
        # Secrets created from files often end in a newline the labeler never types.
        token = environ[variable].strip()
        if not labeler:
            raise ConfigError(f"{variable} names no labeler: use {ENV_TOKEN_PREFIX}<labeler id>")
        if not token:
            raise ConfigError(f"{variable} is empty: every labeler needs a non-empty token")
        if token in owner_of:
            raise ConfigError(
                f"{variable} and {ENV_TOKEN_PREFIX}{owner_of[token]} hold the same token: "
                "each labeler needs their own, or labels would be credited to the wrong one"
            )
        owner_of[token] = labeler
        tokens[labeler] = token
    return tokens


def oidc_from_env(environ: Mapping[str, str]) -> OidcSettings | None:
    """LABELOPS_OIDC_ISSUER and LABELOPS_OIDC_AUDIENCE (both or neither), and the claims."""
    issuer = environ.get(ENV_OIDC_ISSUER, "").strip()
    audience = environ.get(ENV_OIDC_AUDIENCE, "").strip()
    if not issuer and not audience:
        return None
    if not issuer or not audience:
        present, missing = (ENV_OIDC_ISSUER, ENV_OIDC_AUDIENCE)
        if not issuer:
            present, missing = missing, present
        raise ConfigError(
            f"{present} is set but {missing} is not: single sign-on needs both the issuer URL "
            "and the audience"
        )
    problem = secure_url_problem(issuer, ENV_OIDC_ISSUER)
    if problem:
        raise ConfigError(problem)
    return OidcSettings(
        issuer,
        audience,
        username_claim=environ.get(ENV_OIDC_USERNAME_CLAIM, "").strip() or "sub",
        groups_claim=environ.get(ENV_OIDC_GROUPS_CLAIM, "").strip() or "groups",
    )


_SKILLS = TypeAdapter(list[Skill])


def required_skills_from_env(environ: Mapping[str, str]) -> tuple[Skill, ...]:
    """LABELOPS_REQUIRED_SKILLS: a JSON list of the pool's Skill definitions (camelCase, as
    LabelerPool spec.skills[] holds them) that the campaign requires."""
    raw = environ.get(ENV_REQUIRED_SKILLS, "").strip()
    if not raw:
        return ()
    try:
        skills = _SKILLS.validate_json(raw)
    except ValidationError as err:
        raise ConfigError(
            f"{ENV_REQUIRED_SKILLS} is not a JSON list of skills "
            f"({{name, groups, members}}): {validation_reasons(err)}"
        ) from None
    names = [skill.name for skill in skills]
    if len(set(names)) != len(names):
        raise ConfigError(f"{ENV_REQUIRED_SKILLS} names a skill twice: {names}")
    return tuple(skills)


def _response_validation(environ: Mapping[str, str]) -> ResponseValidation:
    raw = environ.get(ENV_RESPONSE_VALIDATION, "").strip().lower()
    if not raw:
        return ResponseValidation.LOG
    try:
        return ResponseValidation(raw)
    except ValueError:
        allowed = ", ".join(m.value for m in ResponseValidation)
        raise ConfigError(f"{ENV_RESPONSE_VALIDATION}={raw!r}: allowed {allowed}") from None
