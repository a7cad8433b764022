"""Model version names, deterministic from the training data.

A version is `builtin-<human labels trained on, zero-padded to 9 digits>`. Labels only
accumulate and a restarted learner reads all of them before it trains, so a restart never
publishes a version that sorts before one already published; zero padding makes string
order and numeric order the same, for consumers that compare versions as strings.
"""

from __future__ import annotations

import re

PREFIX = "builtin-"
DIGITS = 9
_PATTERN = re.compile(rf"^{PREFIX}(\d{{{DIGITS}}})$")


def version_name(labels_trained_on: int) -> str:
    if not 0 <= labels_trained_on < 10**DIGITS:
        raise ValueError(
            f"labels_trained_on={labels_trained_on} is out of range: allowed 0..{10**DIGITS - 1}"
        )
    return f"{PREFIX}{labels_trained_on:0{DIGITS}d}"


def labels_of(version: str) -> int | None:
    """The number of labels a built-in version was trained on; None for another model's."""
    match = _PATTERN.match(version)
    return int(match.group(1)) if match else None
