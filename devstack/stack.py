"""Brings the local stack (PostgreSQL, Kafka, Kubernetes control plane) up and down.

State lives in one directory (default `<repo>/.stack`): each process's pid and log, the
components' data, `stack.json` (what is up and the settings it handed out) and `env`, the
same settings as shell `export` lines. Two clones have two state directories and pick free
ports, so their stacks never collide. Built artifacts live in a cache directory outside the
clone (default `~/.cache/labelops`), so a second clone or a second run only starts them.
"""

from __future__ import annotations

import fcntl
import importlib
import importlib.util
import json
import os
import shlex
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

from devstack import kafka, postgres
from devstack.procs import StackError, port_open

COMPONENTS: tuple[str, ...] = ("postgres", "kafka", "kube")
REPO_ROOT = Path(__file__).resolve().parents[1]


def default_state_dir() -> Path:
    return Path(os.environ.get("LABELOPS_STACK_DIR") or REPO_ROOT / ".stack").resolve()


def default_cache_dir() -> Path:
    return Path(os.environ.get("LABELOPS_CACHE") or Path.home() / ".cache" / "labelops")


def env_file(state_dir: Path) -> Path:
    return state_dir / "env"


def _record_file(state_dir: Path) -> Path:
    return state_dir / "stack.json"


@dataclass(frozen=True)
class UpResult:
    """What `ensure_up` did: the stack's settings and which components it started or reused."""

    env: dict[str, str]
    started: tuple[str, ...]
    reused: tuple[str, ...]


def _kube() -> ModuleType:
    # Imported late: the control plane's module is only needed when "kube" is asked for.
    if not _kube_available():
        raise StackError("kube: devstack.kube is missing from this checkout")
    return importlib.import_module("devstack.kube")


def _kube_available() -> bool:
    return importlib.util.find_spec("devstack.kube") is not None


def _start(name: str, state_dir: Path, cache_dir: Path) -> dict[str, str]:
    if name == "postgres":
        return postgres.start(state_dir)
    if name == "kafka":
        return kafka.start(state_dir, cache_dir)
    # kube.start builds whatever binary the cache lacks before it starts anything.
    return dict(_kube().start(state_dir, cache_dir))


def _stop(name: str, state_dir: Path) -> None:
    if name == "postgres":
        postgres.stop(state_dir)
    elif name == "kafka":
        kafka.stop(state_dir)
    elif _kube_available():
        _kube().stop(state_dir)


def _kube_api_answers(env: dict[str, str]) -> bool:
    import yaml

    config = yaml.safe_load(Path(env["KUBECONFIG"]).read_text())
    server = urlsplit(config["clusters"][0]["cluster"]["server"])
    return server.port is not None and port_open(server.port, server.hostname or "127.0.0.1")


def _running(name: str, state_dir: Path, env: dict[str, str]) -> bool:
    if name == "postgres":
        return postgres.running(state_dir)
    if name == "kafka":
        return kafka.running(state_dir)
    probe: Callable[[Path], bool] | None = getattr(_kube(), "running", None)
    if probe is not None:
        return probe(state_dir)
    try:
        return _kube_api_answers(env)
    except (OSError, KeyError, IndexError, TypeError, ValueError):
        return False


def _check_names(components: Sequence[str]) -> tuple[str, ...]:
    unknown = sorted(set(components) - set(COMPONENTS))
    if unknown:
        raise StackError(f"unknown component(s) {', '.join(unknown)}; choose from {COMPONENTS}")
    # Keep the canonical order, so env files and messages read the same every time.
    return tuple(name for name in COMPONENTS if name in components)


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One up or down at a time per state dir (two pytest runs in one clone, say)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_record(state_dir: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(_record_file(state_dir).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    components = data.get("components", {})
    return {name: dict(env) for name, env in components.items() if name in COMPONENTS}


def _write_record(state_dir: Path, record: dict[str, dict[str, str]]) -> None:
    if not record:
        _record_file(state_dir).unlink(missing_ok=True)
        env_file(state_dir).unlink(missing_ok=True)
        return
    ordered = {name: record[name] for name in COMPONENTS if name in record}
    _atomic_write(_record_file(state_dir), json.dumps({"components": ordered}, indent=2) + "\n")
    _atomic_write(env_file(state_dir), _env_text(state_dir, ordered))


def _env_text(state_dir: Path, record: dict[str, dict[str, str]]) -> str:
    merged = {
        "LABELOPS_STACK_DIR": str(state_dir),
        "LABELOPS_STACK_COMPONENTS": ",".join(record),
    }
    for env in record.values():
        merged.update(env)
    lines = [f"# Written by `python -m devstack up`; load with: . {env_file(state_dir)}"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in merged.items()]
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(text)
    scratch.replace(path)


def read_env(state_dir: Path | None = None) -> dict[str, str]:
    """The settings of the stack that is up, as `.stack/env` holds them; empty when none is."""
    path = env_file(state_dir or default_state_dir())
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    env: dict[str, str] = {}
    for line in lines:
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = "".join(shlex.split(value))
    return env


def _start_batch(
    names: tuple[str, ...], state_dir: Path, cache_dir: Path
) -> dict[str, dict[str, str]]:
    """Start names concurrently; on any failure stop the whole batch and name what failed."""
    if not names:
        return {}
    try:
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="stack") as pool:
            futures = {name: pool.submit(_start, name, state_dir, cache_dir) for name in names}
            outcomes = {name: future.exception() for name, future in futures.items()}
    except BaseException:
        # Ctrl-C while starting: the pool has let every start finish, so all can be stopped.
        _stop_quietly(names, state_dir)
        raise
    failures = {name: exc for name, exc in outcomes.items() if exc is not None}
    if failures:
        # Stop even the failed ones: a process may be up that never became ready.
        _stop_quietly(names, state_dir)
        raise StackError("\n\n".join(_describe_failure(n, e) for n, e in failures.items()))
    return {name: futures[name].result() for name in names}


def _describe_failure(name: str, exc: BaseException) -> str:
    if isinstance(exc, StackError):
        text = str(exc)
        return text if text.startswith(name) else f"{name}: {text}"
    return f"{name}: unexpected {type(exc).__name__}: {exc}"


def _stop_quietly(names: Sequence[str], state_dir: Path) -> None:
    """Stop in reverse start order; one component's stop failing must not strand the others."""
    for name in reversed(names):
        try:
            _stop(name, state_dir)
        except Exception as exc:  # keep stopping the rest; the warning says what failed
            print(f"warning: stopping {name} failed: {exc}")


def ensure_up(
    state_dir: Path | None = None,
    components: Sequence[str] = COMPONENTS,
    cache_dir: Path | None = None,
) -> UpResult:
    """Make sure components are up, reusing those already running; return what was done."""
    state_dir = (state_dir or default_state_dir()).resolve()
    cache_dir = cache_dir or default_cache_dir()
    wanted = _check_names(components)
    with _locked(state_dir):
        record = _read_record(state_dir)
        alive = {n: env for n, env in record.items() if _running(n, state_dir, env)}
        # A recorded component that died (a reboot, a kill) leaves pid files and data behind.
        _stop_quietly([n for n in record if n not in alive], state_dir)
        to_start = tuple(n for n in wanted if n not in alive)
        fresh = _start_batch(to_start, state_dir, cache_dir)
        record = {**alive, **fresh}
        _write_record(state_dir, record)
    env = read_env(state_dir)
    return UpResult(env=env, started=to_start, reused=tuple(n for n in wanted if n in alive))


def up(
    state_dir: Path | None = None,
    components: Sequence[str] = COMPONENTS,
    cache_dir: Path | None = None,
) -> dict[str, str]:
    """Bring components up (or reuse them), write `.stack/env`, print where each one is."""
    result = ensure_up(state_dir, components, cache_dir)
    print(summary(state_dir or default_state_dir(), result))
    return result.env


def down(state_dir: Path | None = None, components: Sequence[str] | None = None) -> None:
    """Stop components (all by default) by pid; the env file goes when nothing is left."""
    state_dir = (state_dir or default_state_dir()).resolve()
    if not state_dir.exists():
        return
    names = _check_names(components if components is not None else COMPONENTS)
    with _locked(state_dir):
        record = _read_record(state_dir)
        # Unrecorded components are stopped too, for the pid files a killed `up` left behind.
        _stop_quietly(names, state_dir)
        _write_record(state_dir, {n: env for n, env in record.items() if n not in names})


def build(cache_dir: Path | None = None, log_dir: Path | None = None,
          components: Sequence[str] = COMPONENTS) -> None:  # fmt: skip
    """Fill the cache (Kafka's jars, the control plane's binaries) without starting anything."""
    cache_dir = cache_dir or default_cache_dir()
    log_dir = log_dir or default_state_dir()
    names = _check_names(components)
    if "kafka" in names:
        kafka.ensure_libs(cache_dir, log_dir)
    if "kube" in names:
        _kube().ensure_built(cache_dir, log_dir)


def _where(name: str, env: dict[str, str]) -> str:
    if name == "postgres" and "LABELOPS_POSTGRES_DSN" in env:
        url = urlsplit(env["LABELOPS_POSTGRES_DSN"])
        return f"listening on {url.hostname}:{url.port}"
    if name == "kafka" and "LABELOPS_KAFKA_BOOTSTRAP" in env:
        return f"listening on {env['LABELOPS_KAFKA_BOOTSTRAP']}"
    if name == "kube" and "KUBECONFIG" in env:
        return f"KUBECONFIG={env['KUBECONFIG']}"
    return "up"


def summary(state_dir: Path, result: UpResult) -> str:
    state_dir = state_dir.resolve()
    record = _read_record(state_dir)
    lines = []
    for name in (*result.started, *result.reused):
        how = "started" if name in result.started else "reused"
        logs = [str(p) for p in sorted(state_dir.glob(f"{name}*.log")) if "-deps" not in p.name]
        logs = logs or [f"{state_dir}/"]
        lines.append(
            f"{name:9} {how:8} {_where(name, record.get(name, {}))}; log: {', '.join(logs)}"
        )
    lines.append(f"settings: {env_file(state_dir)}  (load them with: . {env_file(state_dir)})")
    return "\n".join(lines)
