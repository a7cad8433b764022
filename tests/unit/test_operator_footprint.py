"""The operator process stays small: one process tracks a thousand campaigns within 300 MB,
so it must not carry the data-science stack the worker and the learner use (numpy and
scipy.stats alone are ~90 MiB resident). They load only when a campaign's status needs an
interval (a model or gold items)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("numpy", "scipy", "pandas", "sklearn", "flask")


def test_importing_the_operator_loads_no_data_science_stack() -> None:
    probe = (
        "import sys, labelops.operator.main\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "", f"the operator imports {done.stdout.strip()}"
