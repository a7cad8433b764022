"""The installed package carries the operator, the worker, the learner and the CLI only: no
dev stack, no tests, no benchmarks. The dev stack is the repository package devstack/, used by
the Makefile and the tests; tests/tools/test_wheel_contents.py checks a real wheel build.
"""

from __future__ import annotations

from setuptools import find_packages

from devstack.stack import REPO_ROOT

DEV_ONLY = ("devstack", "tests", "test", "bench", "conftest")


def test_setuptools_finds_only_labelops_packages_none_of_them_dev_tooling() -> None:
    packages = find_packages(where=str(REPO_ROOT / "operator"))
    assert packages, "setuptools found no package under operator/"
    assert all(p == "labelops" or p.startswith("labelops.") for p in packages), packages
    dev = [p for p in packages if set(p.split(".")) & set(DEV_ONLY)]
    assert dev == [], f"dev tooling inside the installed package: {dev}"


def test_no_file_or_directory_under_the_package_is_dev_tooling() -> None:
    package = REPO_ROOT / "operator" / "labelops"
    found = [
        str(path.relative_to(package))
        for path in package.rglob("*")
        if "__pycache__" not in path.parts
        and (path.stem in DEV_ONLY or path.name.startswith("test_"))
    ]
    assert found == [], f"dev tooling under operator/labelops: {found}"
