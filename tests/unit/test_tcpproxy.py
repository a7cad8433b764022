"""The chaos suite's TCP proxy (devstack/tcpproxy.py): its state machine, and the proxy itself
between a loopback echo server and its clients."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from devstack.tcpproxy import Command, ProxyMode, ProxyProcess, TcpProxy, Transition, next_mode

# How long "nothing arrives" is watched for; a forwarded echo takes well under a millisecond.
SILENCE_SECONDS = 0.3


@pytest.mark.parametrize(
    ("mode", "command", "expected"),
    [
        (ProxyMode.FORWARD, Command.CUT, Transition(ProxyMode.FORWARD, reset_all=True)),
        (ProxyMode.BLACKHOLE, Command.CUT, Transition(ProxyMode.BLACKHOLE, reset_all=True)),
        (ProxyMode.FORWARD, Command.BLACKHOLE, Transition(ProxyMode.BLACKHOLE)),
        (ProxyMode.BLACKHOLE, Command.BLACKHOLE, Transition(ProxyMode.BLACKHOLE)),
        (
            ProxyMode.BLACKHOLE,
            Command.FORWARD,
            Transition(ProxyMode.FORWARD, reset_blackholed=True),
        ),
        (ProxyMode.FORWARD, Command.FORWARD, Transition(ProxyMode.FORWARD)),
    ],
)
def test_state_machine(mode: ProxyMode, command: Command, expected: Transition) -> None:
    assert next_mode(mode, command) == expected


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = TcpProxy(target_port=server.server_address[1]).start()
    try:
        yield proxy
    finally:
        proxy.close()
        server.shutdown()
        server.server_close()


def _client(proxy: TcpProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=5)


def _echoes(client: socket.socket, data: bytes = b"ping") -> bool:
    client.sendall(data)
    client.settimeout(SILENCE_SECONDS)
    try:
        return client.recv(4096) == data
    except TimeoutError:
        return False
    finally:
        client.settimeout(5)


def _is_reset(client: socket.socket) -> bool:
    try:
        return client.recv(4096) == b""
    except ConnectionResetError:
        return True


def test_forwards_both_ways(proxy: TcpProxy) -> None:
    data = bytes(range(256)) * 1000
    with _client(proxy) as client:
        client.sendall(data)
        received = b""
        while len(received) < len(data):
            chunk = client.recv(65536)
            assert chunk, f"closed after {len(received)} of {len(data)} bytes"
            received += chunk
    assert received == data
    assert proxy.stats.bytes_forwarded >= 2 * len(data)


def test_cut_resets_open_connections_and_new_ones_work(proxy: TcpProxy) -> None:
    with _client(proxy) as before:
        assert _echoes(before)
        proxy.cut()
        assert _is_reset(before)
    with _client(proxy) as after:
        assert _echoes(after)
    assert proxy.stats.resets == 1


def test_blackhole_accepts_but_never_forwards_then_forward_resets_its_victims(
    proxy: TcpProxy,
) -> None:
    with _client(proxy) as old:
        assert _echoes(old)
        proxy.blackhole()
        assert not _echoes(old)
        with _client(proxy) as new:  # accepted ...
            assert not _echoes(new)  # ... and silent
            assert proxy.mode is ProxyMode.BLACKHOLE
            proxy.forward()
            assert _is_reset(old)
            assert _is_reset(new)
    with _client(proxy) as fresh:
        assert _echoes(fresh)
    assert proxy.stats.bytes_dropped >= 8


def test_the_proxy_in_a_process_of_its_own_takes_the_same_commands() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = ProxyProcess(server.server_address[1])
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
            assert _echoes(client)
            proxy.cut()
            assert _is_reset(client)
        proxy.blackhole()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
            assert not _echoes(client)
            proxy.forward()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
            assert _echoes(client)
    finally:
        proxy.close()
        server.shutdown()
        server.server_close()
