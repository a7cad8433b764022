"""The local stack's PostgreSQL is durable unless a fast mode is asked for by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack import postgres
from devstack.procs import StackError


def _settings(argv: list[str]) -> dict[str, str]:
    pairs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-c"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_durable_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(postgres.DURABILITY_ENV, raising=False)
    assert postgres.durability() == "durable"
    settings = _settings(postgres.server_argv(Path("/data"), 5432, postgres.durability()))
    assert settings["fsync"] == "on"
    assert settings["synchronous_commit"] == "on"
    assert settings["full_page_writes"] == "on"


def test_fast_mode_turns_durability_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(postgres.DURABILITY_ENV, "fast")
    settings = _settings(postgres.server_argv(Path("/data"), 5432, postgres.durability()))
    assert (settings["fsync"], settings["synchronous_commit"], settings["full_page_writes"]) == (
        "off",
        "off",
        "off",
    )


def test_an_unknown_mode_is_refused_with_the_allowed_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(postgres.DURABILITY_ENV, "yolo")
    with pytest.raises(StackError, match=r"LABELOPS_POSTGRES_DURABILITY='yolo'.*durable, fast"):
        postgres.durability()
