"""The chaos suite's own PostgreSQL and Kafka (a private stack, never the shared one), with
the faults that need their processes: SIGKILL and restart on the same data and port, and
PostgreSQL turned read-only the way a failed-over primary answers.

The servers are started by devstack (PostgreSQL durable, as `make chaos` must measure); the
command line each one runs with is read back from /proc, so a restart runs exactly what
devstack ran. The worker reaches both through a TCP proxy (devstack.tcpproxy) the suite
controls; Kafka gets a second listener for it whose advertised address is the proxy's, since
Kafka clients connect to the advertised address after the bootstrap.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from confluent_kafka.admin import AdminClient

from devstack import postgres, stack
from devstack.procs import free_port, pid_alive, start_process, wait_until
from devstack.tcpproxy import ProxyProcess
from labelops.api.kafka_connection import ENV_BOOTSTRAP, connection_from_env

DEFAULT_STATE_DIR = Path("/tmp/chaos-stack")
READY_TIMEOUT = 180.0
PROXIED_LISTENER = "PROXIED"
# What a pool needs to notice a dead peer: connects give up, idle connections are probed.
WORKER_DSN_OPTIONS = "connect_timeout=5&keepalives_idle=5&keepalives_interval=2&keepalives_count=3"


@dataclass
class Server:
    """A server process as devstack started it, restartable with the same command line."""

    name: str
    argv: list[str]
    cwd: Path
    user: str | None
    pid: int

    @classmethod
    def recorded(cls, name: str, state_dir: Path, user: str | None) -> Server:
        pid = int((state_dir / f"{name}.pid").read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        return cls(name, [a.decode() for a in argv], cwd, user, pid)


class ChaosStack:
    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR) -> None:
        self.state_dir = state_dir.resolve()
        self.pg_proxy: ProxyProcess | None = None
        self.kafka_proxy: ProxyProcess | None = None

    # --- up and down -------------------------------------------------------------------

    def up(self) -> None:
        """A fresh private stack (whatever an earlier run left is stopped first)."""
        if postgres.durability() != "durable":
            raise RuntimeError(
                f"{postgres.DURABILITY_ENV}={postgres.durability()}: the chaos suite measures "
                "with durable commits only (unset it, or set it to durable)"
            )
        stack.down(self.state_dir)
        self.env = env = stack.ensure_up(self.state_dir, ("postgres", "kafka")).env
        self.admin_dsn = env["LABELOPS_POSTGRES_DSN"]
        self.bootstrap = env[ENV_BOOTSTRAP]
        self.postgres = Server.recorded("postgres", self.state_dir, postgres.system_user())
        self.kafka = Server.recorded("kafka", self.state_dir, None)
        pg_port = urlsplit(self.admin_dsn).port
        assert pg_port is not None
        self.pg_proxy = ProxyProcess(pg_port)
        self._add_proxied_listener()

    def _add_proxied_listener(self) -> None:
        """A second client listener, like the first (same protocol, same SASL settings), whose
        advertised address is the proxy's; Kafka is restarted once to take it."""
        internal = free_port()
        self.kafka_proxy = ProxyProcess(internal)
        props = self.kafka.cwd / "server.properties"
        settings = dict(
            line.split("=", 1) for line in props.read_text().splitlines() if "=" in line
        )
        clients = settings["advertised.listeners"].split(",")[0].split("://")[0]
        protocols = dict(
            p.split(":") for p in settings["listener.security.protocol.map"].split(",")
        )
        prefix = f"listener.name.{clients.lower()}."
        proxied = PROXIED_LISTENER.lower()
        settings.update(
            {
                f"listener.name.{proxied}.{key[len(prefix) :]}": value
                for key, value in settings.items()
                if key.startswith(prefix)
            }
        )
        settings["listeners"] += f",{PROXIED_LISTENER}://127.0.0.1:{internal}"
        settings["advertised.listeners"] += (
            f",{PROXIED_LISTENER}://127.0.0.1:{self.kafka_proxy.port}"
        )
        settings["listener.security.protocol.map"] += f",{PROXIED_LISTENER}:{protocols[clients]}"
        self._stop(self.kafka, signal.SIGTERM)
        props.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        self.start_kafka()

    def kafka_config(self, settings: dict[str, Any] | None = None) -> dict[str, Any]:
        """librdkafka settings for a client of the broker, with the stack's credentials."""
        return connection_from_env(self.env).client_config(settings)

    @property
    def worker_kafka_env(self) -> dict[str, str]:
        """The worker's LABELOPS_KAFKA_* variables: the stack's credentials, the proxy's address."""
        assert self.kafka_proxy is not None
        kafka_env = {k: v for k, v in self.env.items() if k.startswith("LABELOPS_KAFKA_")}
        return {**kafka_env, ENV_BOOTSTRAP: f"127.0.0.1:{self.kafka_proxy.port}"}

    def down(self) -> None:
        for proxy in (self.pg_proxy, self.kafka_proxy):
            if proxy is not None:
                proxy.close()
        stack.down(self.state_dir)

    # --- what the worker is given ------------------------------------------------------

    @property
    def worker_dsn(self) -> str:
        assert self.pg_proxy is not None
        url = urlsplit(self.admin_dsn)
        netloc = f"{url.username}:{url.password}@127.0.0.1:{self.pg_proxy.port}"
        return urlunsplit((url.scheme, netloc, url.path, WORKER_DSN_OPTIONS, ""))

    # --- faults --------------------------------------------------------------------------

    def kill_postgres(self) -> None:
        self._stop(self.postgres, signal.SIGKILL)

    def start_postgres(self) -> None:
        self._restart(self.postgres, self._postgres_ready)

    def kill_kafka(self) -> None:
        self._stop(self.kafka, signal.SIGKILL)

    def start_kafka(self) -> None:
        self._restart(self.kafka, self._kafka_ready)

    def set_read_only(self, read_only: bool) -> None:
        """Every session's next transaction is read-only (writes fail with SQLSTATE 25006),
        or writable again; a configuration reload, no restart."""
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            if read_only:
                conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            else:
                conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
            conn.execute("SELECT pg_reload_conf()")

    def _stop(self, server: Server, sig: signal.Signals) -> None:
        """The whole process group (devstack starts each server in its own session), so no
        backend of a killed PostgreSQL outlives its postmaster."""
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 60
        while pid_alive(server.pid):
            if time.monotonic() > deadline:
                os.killpg(server.pid, signal.SIGKILL)
            time.sleep(0.05)

    def _restart(self, server: Server, ready: Callable[[], bool]) -> None:
        started = start_process(
            server.name, server.argv, self.state_dir, cwd=server.cwd, user=server.user
        )
        server.pid = started.pid
        wait_until(started, ready, READY_TIMEOUT, "ready again")

    def _postgres_ready(self) -> bool:
        with psycopg.connect(self.admin_dsn, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def _kafka_ready(self) -> bool:
        admin = AdminClient(self.kafka_config({"socket.timeout.ms": 2000, "log_level": 0}))
        metadata = admin.list_topics(timeout=2)
        # A restarted broker answers metadata before it leads its partitions again.
        return all(p.leader >= 0 for t in metadata.topics.values() for p in t.partitions.values())
