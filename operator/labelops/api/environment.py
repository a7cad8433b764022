"""Reading a process's settings from environment variables the operator writes.

The worker and the learner are configured the same way (the Deployment's env is the whole
configuration), so they read it with the same checks and the same words: every refusal
names the variable, the value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError


class ConfigError(ValueError):
    """The environment cannot run this process; the message names the variable."""


def required(environ: Mapping[str, str], variable: str, what: str) -> str:
    value = environ.get(variable, "").strip()
    if not value:
        raise ConfigError(f"{variable} is not set: it must hold {what}")
    return value


def integer(environ: Mapping[str, str], variable: str, default: int, low: int, high: int) -> int:
    raw = environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{variable}={raw!r} is not an integer ({low}..{high})") from None
    if not low <= value <= high:
        raise ConfigError(f"{variable}={value} is out of range: allowed {low}..{high}")
    return value


def validation_reasons(err: ValidationError) -> str:
    """A pydantic error as `field.path: message; ...`, for a ConfigError naming the variable."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in err.errors()
    )
