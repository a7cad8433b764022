"""terraform/ is in canonical `terraform fmt` style (what CI's `terraform fmt -check` wants).

Validation and a real apply need providers and the control plane: tests/e2e/test_terraform.py.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from devstack.stack import REPO_ROOT


def test_terraform_files_are_formatted() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.fail("terraform is not on PATH (this machine image ships it in /usr/local/bin)")
    run = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(REPO_ROOT / "terraform")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, f"run `terraform fmt -recursive terraform`:\n{run.stdout}"
