"""The worker's HTTP server (labelops.worker.server) on a loopback port with a plain WSGI
app: keep-alive, oversized and slow request heads, and a graceful stop."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from labelops.worker import server as server_module
from labelops.worker.server import GracefulServer, GuardedProtocol

ENTERED = threading.Event()
RELEASE = threading.Event()


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/slow":  # only the graceful stop test asks for it
        ENTERED.set()
        RELEASE.wait(10)
    body = f"hello {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def serving(monkeypatch: pytest.MonkeyPatch) -> Iterator[GracefulServer]:
    monkeypatch.setattr(GuardedProtocol, "head_seconds", 0.5)
    server = GracefulServer(hello, "127.0.0.1", 0, grace_seconds=5)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    wait_until_listening(server.port)
    yield server
    server.shutdown(grace_seconds=5)
    thread.join(10)


def wait_until_listening(port: int) -> None:
    """The server's socket listens from its constructor on, so a connection waits in the
    backlog until the loop serves it: one request answered means it is up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as probe:
        probe.sendall(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_all(probe).startswith(b"HTTP/1.1 200"), "the server did not answer"


def read_all(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_two_requests_on_one_kept_alive_connection(serving: GracefulServer) -> None:
    with socket.create_connection(("127.0.0.1", serving.port)) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        sock.settimeout(5)
        while received.count(b"hello") < 2:
            received += sock.recv(65536)
    assert b"hello /one" in received and b"hello /two" in received
    assert received.count(b"HTTP/1.1 200 OK") == 2


def test_an_oversized_request_head_is_431_and_closes(serving: GracefulServer) -> None:
    with socket.create_connection(("127.0.0.1", serving.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        try:
            for n in range(200):  # 200 x 1 KiB, never ending the head
                sock.sendall(f"X-Filler-{n}: {'a' * 1000}\r\n".encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed on us mid-way, as it should
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")


def test_a_request_head_that_never_ends_is_408_and_closes(serving: GracefulServer) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", serving.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout")
    assert time.monotonic() - started < 5


def test_a_silent_connection_is_closed_too(serving: GracefulServer) -> None:
    with socket.create_connection(("127.0.0.1", serving.port)) as sock:
        assert read_all(sock).startswith(b"HTTP/1.1 408")


def test_a_big_body_in_the_same_packet_as_its_head_is_not_mistaken_for_a_big_head(
    serving: GracefulServer,
) -> None:
    body = b"x" * (server_module.MAX_HEAD_BYTES * 2)
    with socket.create_connection(("127.0.0.1", serving.port)) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"hello /upload")


def test_shutdown_answers_the_request_in_flight_then_refuses_connections() -> None:
    server = GracefulServer(hello, "127.0.0.1", 0, grace_seconds=5)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    wait_until_listening(server.port)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ENTERED.wait(10)
        drained: list[bool] = []
        stopping = threading.Thread(target=lambda: drained.append(server.shutdown(5)))
        stopping.start()
        RELEASE.set()
        answer = read_all(sock)
        stopping.join(15)
    thread.join(10)
    assert drained == [True]
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"hello /slow")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
