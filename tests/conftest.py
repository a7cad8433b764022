"""Session fixtures that give tests the real local stack.

`stack_env` brings the stack up once per session, or reuses the one `make stack-up` left
running (via `.stack/env`). Whatever this session started it also stops, pass or fail;
a stack it found running it leaves alone. Unit tests request none of these fixtures, so they
run without any stack.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

import pytest

import gotools
from devstack import stack
from devstack.procs import StackError
from labelops.api.kafka_connection import KafkaConnection, connection_from_env

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

BACKING_SERVICES = ("postgres", "kafka")


def pytest_configure(config: pytest.Config) -> None:
    # Builds of the stack's Go tools report their progress on the terminal (gotools).
    gotools.capture_manager = config.pluginmanager.getplugin("capturemanager")


def _components_for(session: pytest.Session) -> tuple[str, ...]:
    """Only pay for the control plane when a collected test needs it."""
    needs_kube = any(
        item.get_closest_marker("e2e") is not None
        or "kube_api" in getattr(item, "fixturenames", ())
        for item in session.items
    )
    return (*BACKING_SERVICES, "kube") if needs_kube else BACKING_SERVICES


@pytest.fixture(scope="session")
def stack_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The stack's settings (KUBECONFIG, LABELOPS_KAFKA_BOOTSTRAP, LABELOPS_POSTGRES_DSN, ...).

    They are also put into os.environ for the session, so processes the tests spawn (the
    operator, workers) find the stack the way a developer's shell would after `. .stack/env`.
    """
    state_dir = stack.default_state_dir()
    try:
        # A cold start builds the control plane for many minutes: let it say so.
        with gotools.on_terminal():
            result = stack.ensure_up(state_dir, _components_for(request.session))
    except StackError as exc:
        pytest.fail(f"the local stack did not come up:\n{exc}", pytrace=False)
    saved = {key: os.environ.get(key) for key in result.env}
    os.environ.update(result.env)
    previous = _interrupt_on_sigterm() if result.started else None
    try:
        yield result.env
    finally:
        _restore(saved)
        if result.started:
            stack.down(state_dir, result.started)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _interrupt_on_sigterm() -> signal.Handlers | None:
    """Make SIGTERM (a CI job cancelled, `kill`) unwind like Ctrl-C, so the stack is stopped.

    Only where nobody else handles SIGTERM yet; returns the handler to put back.
    """
    current = signal.getsignal(signal.SIGTERM)
    if current is not signal.SIG_DFL:
        return None
    signal.signal(signal.SIGTERM, _raise_interrupt)
    return signal.SIG_DFL


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def kafka_bootstrap(stack_env: dict[str, str]) -> str:
    return stack_env["LABELOPS_KAFKA_BOOTSTRAP"]


@pytest.fixture(scope="session")
def kafka(stack_env: dict[str, str]) -> KafkaConnection:
    """The stack's broker as its admin (super user) reaches it: every test client's settings
    start from kafka.client_config()."""
    return connection_from_env(stack_env)


@pytest.fixture(scope="session")
def postgres_dsn(stack_env: dict[str, str]) -> str:
    """Admin DSN (role postgres, with its password) of the stack's PostgreSQL."""
    return stack_env["LABELOPS_POSTGRES_DSN"]


@pytest.fixture(scope="session")
def kube_api(stack_env: dict[str, str]) -> Iterator[ApiClient]:
    """A kubernetes.client.ApiClient for the stack's control plane (admin kubeconfig)."""
    from kubernetes import config

    if "KUBECONFIG" not in stack_env:
        pytest.fail("the stack has no control plane; mark the test e2e", pytrace=False)
    client = config.new_client_from_config(config_file=stack_env["KUBECONFIG"])
    try:
        yield client
    finally:
        client.close()
