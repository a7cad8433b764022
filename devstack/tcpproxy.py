"""A TCP proxy the chaos suite puts between a worker and PostgreSQL or Kafka, to break the
network on purpose.

    proxy = TcpProxy(target_port=5432).start()   # listens on proxy.port, forwards
    proxy.cut()         # every open connection is reset; new ones are forwarded again
    proxy.blackhole()   # connections are accepted and read, but nothing is forwarded,
                        # either way: the peer waits, as behind a dead switch
    proxy.forward()     # back to normal; connections that lived through the blackhole are
                        # reset (their bytes were dropped, as TCP gives up after its timeout)
    proxy.close()

The proxy runs its own asyncio loop in a daemon thread; the methods above may be called from
any thread and return once the change is in effect. The modes are a small state machine
(ProxyMode, `next_mode`), unit-tested with the proxy itself in tests/unit/test_tcpproxy.py.

ProxyProcess runs the same proxy in a process of its own (`python -m devstack.tcpproxy
TARGET_PORT`, commands on stdin, one answer line each), so the bytes it moves cost no time
of the Python process that drives the load.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import socket
import subprocess
import sys
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

CHUNK = 64 * 1024


class ProxyMode(enum.Enum):
    FORWARD = "forward"
    BLACKHOLE = "blackhole"


class Command(enum.Enum):
    FORWARD = "forward"
    BLACKHOLE = "blackhole"
    CUT = "cut"


@dataclass(frozen=True)
class Transition:
    """What a command does: the mode after it, and which open connections are reset."""

    mode: ProxyMode
    reset_all: bool = False
    reset_blackholed: bool = False


def next_mode(mode: ProxyMode, command: Command) -> Transition:
    """The proxy's state machine. A cut resets every connection and keeps the mode; leaving
    the blackhole resets the connections whose bytes it dropped (their streams have holes)."""
    if command is Command.CUT:
        return Transition(mode, reset_all=True)
    if command is Command.BLACKHOLE:
        return Transition(ProxyMode.BLACKHOLE)
    return Transition(ProxyMode.FORWARD, reset_blackholed=mode is ProxyMode.BLACKHOLE)


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    blackholed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


@dataclass
class ProxyStats:
    accepted: int = 0
    resets: int = 0
    bytes_forwarded: int = 0
    bytes_dropped: int = 0


class TcpProxy:
    def __init__(
        self, target_port: int, target_host: str = "127.0.0.1", listen_port: int = 0
    ) -> None:
        self.target = (target_host, target_port)
        self._sock = socket.create_server(("127.0.0.1", listen_port), backlog=512)
        self.port = int(self._sock.getsockname()[1])
        self.mode = ProxyMode.FORWARD
        self.stats = ProxyStats()
        self._connections: set[_Connection] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcpproxy", daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._serve())
        return self

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def cut(self) -> None:
        self._call(self._command(Command.CUT))

    def blackhole(self) -> None:
        self._call(self._command(Command.BLACKHOLE))

    def forward(self) -> None:
        self._call(self._command(Command.FORWARD))

    def close(self) -> None:
        if not self._thread.is_alive():
            self._sock.close()
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=30)

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._accept, sock=self._sock)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.reset()

    async def _command(self, command: Command) -> None:
        change = next_mode(self.mode, command)
        self.mode = change.mode
        for connection in list(self._connections):
            if change.reset_all or (change.reset_blackholed and connection.blackholed):
                self.stats.resets += 1
                connection.reset()
                self._connections.discard(connection)
            elif self.mode is ProxyMode.BLACKHOLE:
                connection.blackholed = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        connection = _Connection(writer, blackholed=self.mode is ProxyMode.BLACKHOLE)
        self._connections.add(connection)
        try:
            if connection.blackholed:
                await self._pump(reader, None, connection)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return  # the target is down: the client sees its connection reset
            connection.upstream = up_writer
            await asyncio.gather(
                self._pump(reader, up_writer, connection),
                self._pump(up_reader, writer, connection),
            )
        finally:
            connection.reset()
            self._connections.discard(connection)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter | None,
        connection: _Connection,
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                if connection.blackholed or writer is None:
                    self.stats.bytes_dropped += len(data)
                    continue
                # Counted before the peer can have it, so a reader's figures are never behind.
                self.stats.bytes_forwarded += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One direction ending ends the other: PostgreSQL and Kafka never half-close.
            connection.reset()


class ProxyProcess:
    """A TcpProxy in a child process, driven with the same three commands."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "devstack.tcpproxy", str(target_port), "--host", target_host],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self._answer())

    def _answer(self) -> str:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the proxy process exited ({self._process.wait()})")
        return line.strip()

    def _send(self, command: Command) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(command.value + "\n")
        self._process.stdin.flush()
        if self._answer() != "ok":
            raise RuntimeError(f"the proxy refused {command.value}")

    def cut(self) -> None:
        self._send(Command.CUT)

    def blackhole(self) -> None:
        self._send(Command.BLACKHOLE)

    def forward(self) -> None:
        self._send(Command.FORWARD)

    def close(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A TCP proxy driven by commands on stdin.")
    parser.add_argument("target_port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    proxy = TcpProxy(args.target_port, args.host).start()
    actions = {Command.CUT: proxy.cut, Command.BLACKHOLE: proxy.blackhole,
               Command.FORWARD: proxy.forward}  # fmt: skip
    print(proxy.port, flush=True)
    for line in sys.stdin:
        try:
            actions[Command(line.strip())]()
        except ValueError:
            print(f"unknown command {line.strip()!r}; use one of cut, blackhole, forward",
                  flush=True)  # fmt: skip
            continue
        print("ok", flush=True)
    proxy.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
