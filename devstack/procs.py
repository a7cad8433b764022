"""Process plumbing shared by every component of the local stack.

Each component runs as a plain process whose pid is written under the stack's state
directory, so `stack-down` can stop exactly what `stack-up` started, also after a crash.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

T = TypeVar("T")


class StackError(RuntimeError):
    """A component could not be built or started; the message says which and why."""


@dataclass(frozen=True)
class Started:
    name: str
    pid: int
    log: Path


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_tool(tool: str, install_hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise StackError(f"{tool} is not installed or not on PATH. Install it with: {install_hint}")
    return path


def log_tail(log: Path, lines: int = 25) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text[-lines:])


def as_user(user: str | None) -> dict[str, Any]:
    """Popen/run keyword arguments that drop root to `user`; empty when user is None."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def start_process(
    name: str,
    argv: Sequence[str],
    state_dir: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> Started:
    """Start argv in its own session, logging to <state_dir>/<name>.log, pid in <name>.pid.

    user: run as this system user (with its primary group only), for servers such as
    PostgreSQL that refuse to run as root.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
            **as_user(user),
        )
    (state_dir / f"{name}.pid").write_text(str(proc.pid))
    return Started(name=name, pid=proc.pid, log=log)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        # Not ours: once `up` has exited, init adopts it and may reap it only seconds later.
        return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the command name, which is in parentheses and may hold spaces.
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


class TimedOut(Exception):
    """poll_until's answer when time ran out: `last` is what the probe said last (its
    exception, if it raised one it was told to retry on)."""

    def __init__(self, last: Any) -> None:
        super().__init__(f"timed out; last seen: {last!r}")
        self.last = last


def poll_until(
    probe: Callable[[], T],
    timeout: float,
    *,
    until: Callable[[T], object] = bool,
    interval: float = 0.05,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Ask probe() until until(answer) holds (by default: the answer is truthy) and return
    that answer; an exception of retry_on counts as not yet. Raises TimedOut once timeout
    seconds passed. The one polling loop of the stack and of the tests' wait helpers."""
    deadline = time.monotonic() + timeout
    while True:
        last: Any
        try:
            last = probe()
        except retry_on as err:
            last = err
        else:
            if until(last):
                return cast(T, last)
        if time.monotonic() >= deadline:
            raise TimedOut(last)
        time.sleep(interval)


def wait_until(
    started: Started,
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.2,
) -> None:
    """Poll ready() until true; fail naming the component, its log and the log's tail."""

    def probe() -> bool:
        if not pid_alive(started.pid):
            raise StackError(
                f"{started.name} exited before it was {what}. Log: {started.log}\n"
                f"{log_tail(started.log)}"
            )
        try:
            return ready()
        except Exception:  # not ready yet: any failure of the probe means try again
            return False

    try:
        poll_until(probe, timeout, interval=interval)
    except TimedOut:
        raise StackError(
            f"{started.name} was not {what} within {timeout:.0f}s. Log: {started.log}\n"
            f"{log_tail(started.log)}"
        ) from None


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def stop_pidfile(pidfile: Path, grace: float = 15.0) -> None:
    """Stop the process group recorded in pidfile: TERM, then KILL after grace seconds."""
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        if not pid_alive(pid):
            break
    pidfile.unlink(missing_ok=True)
