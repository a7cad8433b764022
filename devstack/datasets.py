"""Where the shared real datasets are (SMS Spam Collection, crowd answers), used in place.

They live beside the repository (`../shared/datasets`), not in it. A clone elsewhere (a CI
checkout in another directory) names them with LABELOPS_DATASETS.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASETS_ENV = "LABELOPS_DATASETS"
CANDIDATES = (REPO_ROOT.parent / "shared" / "datasets", Path("/work/shared/datasets"))


def datasets_dir() -> Path:
    """LABELOPS_DATASETS if set, else the first of CANDIDATES that exists (else the first)."""
    named = os.environ.get(DATASETS_ENV)
    if named:
        return Path(named)
    for candidate in CANDIDATES:
        if candidate.is_dir():
            return candidate
    return CANDIDATES[0]
