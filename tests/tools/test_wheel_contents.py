"""A real wheel build (pip, setuptools from pyproject.toml) carries labelops only: no dev
stack, no tests, no benchmarks, and every data file the package reads at run time.

Built from a copy of pyproject.toml and operator/, so stale files in the checkout's build/
cannot hide in (or leak into) the result.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from devstack.stack import REPO_ROOT


def test_the_wheel_holds_the_package_and_nothing_of_the_dev_tooling(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", source)
    shutil.copytree(
        REPO_ROOT / "operator",
        source / "operator",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    (wheel,) = tmp_path.glob("labelops-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"labelops", f"{wheel.name.split('-py3')[0]}.dist-info"}, tops
    dev = [n for n in names if any(part in ("devstack", "tests", "bench") for part in n.split("/"))]
    assert dev == [], f"dev tooling in the wheel: {dev}"
    # What the worker and the store read at run time travels with the code.
    for needed in (
        "labelops/worker/templates/index.html",
        "labelops/worker/static/app.js",
        "labelops/store/migrations/0001_initial.sql",
    ):
        assert needed in names, f"{needed} is missing from the wheel"
    assert "labelops/worker/http/app.py" in names
