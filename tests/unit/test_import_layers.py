"""Imports run downward only: the import-linter contracts of pyproject.toml hold for the
package, and they do catch an upward import.

Layers (highest first): labelops.cli > operator | worker | report | learner (independent of
each other) > clients | identity > store > quality | routing > api; and the installed
package never imports the dev stack, the tests or the benchmarks. `make lint` runs the
same check (`lint-imports`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

from devstack.stack import REPO_ROOT

PACKAGE = REPO_ROOT / "operator" / "labelops"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_the_package_keeps_every_import_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    assert lint_imports(config_filename=str(REPO_ROOT / "pyproject.toml"), no_cache=True) == 0


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        (
            "api/naming.py",
            "from labelops.clients import errors",
            "labelops.api.naming -> labelops.clients",
        ),
        (
            "store/results.py",
            "import labelops.clients.kube",
            "labelops.store.results -> labelops.clients",
        ),
        (
            "operator/rollout.py",
            "from labelops.worker import auth",
            "labelops.operator.rollout -> labelops.worker",
        ),
        (
            "worker/auth.py",
            "import labelops.operator.plan",
            "labelops.worker.auth -> labelops.operator",
        ),
        ("clients/errors.py", "import labelops.cli", "labelops.clients.errors -> labelops.cli"),
        (
            "routing/fair_share.py",
            "import labelops.identity.oidc",
            "labelops.routing.fair_share -> labelops.identity",
        ),
        (
            "identity/oidc.py",
            "from labelops.worker import auth",
            "labelops.identity.oidc -> labelops.worker",
        ),
        ("report/kubeconfig.py", "import devstack.stack", "labelops.report.kubeconfig -> devstack"),
    ],
)
def test_an_upward_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    """The same contracts over a copy of the package with one import added."""
    shutil.copytree(PACKAGE, tmp_path / "labelops", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "devstack").mkdir()
    (tmp_path / "devstack" / "__init__.py").write_text("")
    (tmp_path / "devstack" / "stack.py").write_text("")
    target = tmp_path / "labelops" / module
    target.write_text(target.read_text() + f"\n{line}\n")
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    run = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert broken in run.stdout, run.stdout
