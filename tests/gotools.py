"""Go programs the tests run, built on first use into the stack's binary cache.

`stack_tool` finds a binary of the local stack (helm, kstatus, kubectl, ...) where
devstack.kube keeps it, building only that one when it is missing, so a test that
needs helm does not wait for the whole control plane to compile. `go_tool` builds the
project's own test helpers (stack/gitops-tools), again whenever their sources change.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from devstack import kube
from devstack.build_progress import BuildStep, BuildTimes
from devstack.procs import StackError
from devstack.stack import REPO_ROOT, default_cache_dir, default_state_dir

BUILD_TIMEOUT_SECONDS = 900

# pytest's capture manager, set by conftest.pytest_configure: a build of many minutes must
# reach the terminal while pytest captures the output of tests and fixtures.
capture_manager: Any = None


@contextmanager
def on_terminal() -> Iterator[None]:
    """What is printed inside reaches the terminal, captured or not."""
    if capture_manager is None:
        yield
        return
    with capture_manager.global_and_fixture_disabled():
        yield


def stack_tool(component: str) -> Path:
    try:
        with on_terminal():
            return kube.ensure_binary(default_cache_dir(), default_state_dir(), component)
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)


def _stale(binary: Path, module_dir: Path) -> bool:
    if not binary.exists():
        return True
    built = binary.stat().st_mtime
    sources = [*module_dir.rglob("*.go"), module_dir / "go.mod", module_dir / "go.sum"]
    return any(src.exists() and src.stat().st_mtime > built for src in sources)


def go_tool(name: str, module: str, package: str = ".", test_binary: bool = False) -> Path:
    """Path of tool `name`, built from `package` of the Go module at REPO_ROOT/`module`.

    test_binary: compile the package's tests (`go test -c`) instead of its command.
    """
    module_dir = REPO_ROOT / module
    binary = default_cache_dir() / "bin" / name
    if not _stale(binary, module_dir):
        return binary
    try:
        go = kube.go_tool()
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f".{name}.{os.getpid()}")  # rename: never a half-written binary
    times = BuildTimes.in_cache(default_cache_dir())
    with on_terminal(), BuildStep(times, name, f"from {module}", prefix="tests"):
        build = _go_build(go, module_dir, package, partial, test_binary)
        if build.returncode != 0:
            pytest.fail(f"building {name} from {module} failed:\n{build.stderr}", pytrace=False)
    partial.replace(binary)
    return binary


def _go_build(
    go: str, module_dir: Path, package: str, output: Path, test_binary: bool
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            go,
            *(["test", "-c"] if test_binary else ["build"]),
            "-trimpath",
            "-o",
            str(output),
            package,
        ],
        cwd=module_dir,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
