"""The worker's HTTP server (labelops.worker.server: gunicorn with gevent processes) on a
loopback port with a plain WSGI app: keep-alive, the limits on request heads and what a
client gets for them, and the graceful stop on SIGTERM.

The server runs as this file run as a script, in a process of its own (as `labelops
worker` runs it), on a socket this test binds and hands it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labelops.worker import server as server_module

KEEP_ALIVE_SECONDS = 1


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answers "hello <path>"; /slow says it started (a file named by ENTERED_FILE), then
    reads its whole body first, so it is in flight until the client sends the rest."""
    if environ["PATH_INFO"] == "/slow":
        Path(os.environ["ENTERED_FILE"]).touch()
        environ["wsgi.input"].read()
    body = f"hello {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def serve(listen_fd: int, keep_alive_seconds: int) -> None:
    options = server_module.gunicorn_options(
        listen_fd=listen_fd,
        processes=1,
        keepalive=keep_alive_seconds,
        graceful_timeout=10,
        loglevel="warning",
    )
    server_module.GunicornServer(options, lambda _: server_module.LoadedApp(hello)).run()


class Served:
    def __init__(self, tmp_path: Path, keep_alive_seconds: int = KEEP_ALIVE_SECONDS) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        self.entered = tmp_path / "entered"
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(listener.fileno()), str(keep_alive_seconds)],
            pass_fds=(listener.fileno(),),
            env={**os.environ, "ENTERED_FILE": str(self.entered)},
        )
        listener.close()  # the server holds its own copy
        wait_until(self.answers, 60, "the server did not answer")

    def answers(self) -> bool:
        with connect(self.port) as probe:
            probe.sendall(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return read_all(probe).startswith(b"HTTP/1.1 200")

    def refuses_connections(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return True
        return False

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the tests that leave it running."""
    server = Served(tmp_path_factory.mktemp("served"))
    try:
        yield server
    finally:
        server.stop()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything until the server closes; a reset after an answer keeps the answer (a
    server closing with our unread input in its buffer resets the connection)."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def wait_until(condition: Callable[[], bool], timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{why} within {timeout}s")
        time.sleep(0.05)


def send_ignoring_a_close(sock: socket.socket, parts: Iterable[bytes]) -> None:
    try:
        for part in parts:
            sock.sendall(part)
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed on us mid-way, as it should


def test_two_requests_on_one_kept_alive_connection(served: Served) -> None:
    with connect(served.port) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while received.count(b"hello") < 2:
            received += sock.recv(65536)
    assert b"hello /one" in received and b"hello /two" in received
    assert received.count(b"HTTP/1.1 200 OK") == 2


def test_header_fields_over_64_kib_are_431_and_close(served: Served) -> None:
    with connect(served.port) as sock:
        send_ignoring_a_close(
            sock,
            [b"GET / HTTP/1.1\r\nHost: x\r\n"]
            # 200 fields of 1 KiB, never ending the head: past 64 KiB of fields.
            + [f"X-Filler-{n}: {'a' * 1000}\r\n".encode() for n in range(200)],
        )
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")


@pytest.mark.parametrize(
    ("head", "status"),
    [
        # One field over HEADER_FIELD_LIMIT.
        (f"X-Big: {'a' * server_module.HEADER_FIELD_LIMIT}\r\n", b"431"),
        # More fields than HEADER_FIELDS_LIMIT, each small.
        ("".join(f"X-{n}: y\r\n" for n in range(server_module.HEADER_FIELDS_LIMIT)), b"431"),
    ],
    ids=["a-field-too-long", "too-many-fields"],
)
def test_each_header_limit_is_431(served: Served, head: str, status: bytes) -> None:
    with connect(served.port) as sock:
        send_ignoring_a_close(sock, [f"GET / HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode()])
        assert read_all(sock).startswith(b"HTTP/1.1 " + status)


def test_a_request_line_over_the_limit_is_414(served: Served) -> None:
    path = "/" + "a" * server_module.REQUEST_LINE_LIMIT
    with connect(served.port) as sock:
        send_ignoring_a_close(sock, [f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()])
        assert read_all(sock).startswith(b"HTTP/1.1 414 URI Too Long")


def test_a_head_just_within_the_limits_is_served(served: Served) -> None:
    fields = "".join(
        f"X-{n:02d}: {'a' * (server_module.HEADER_FIELD_LIMIT - 10)}\r\n"
        for n in range(server_module.HEADER_FIELDS_LIMIT - 2)
    )
    with connect(served.port) as sock:
        sock.sendall(f"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{fields}\r\n".encode())
        assert read_all(sock).endswith(b"hello /ok")


def test_a_request_head_that_never_ends_is_closed_without_an_answer(served: Served) -> None:
    """gunicorn sends no 408: a head not whole within the keep-alive time just ends the
    connection."""
    started = time.monotonic()
    with connect(served.port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        assert read_all(sock) == b""
    assert time.monotonic() - started < KEEP_ALIVE_SECONDS + 3


def test_a_silent_connection_is_closed_too(served: Served) -> None:
    started = time.monotonic()
    with connect(served.port) as sock:
        assert read_all(sock) == b""
    assert time.monotonic() - started < KEEP_ALIVE_SECONDS + 3


def test_a_big_body_in_the_same_packet_as_its_head_is_not_mistaken_for_a_big_head(
    served: Served,
) -> None:
    body = b"x" * (256 * 1024)
    with connect(served.port) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"hello /upload")


def test_sigterm_answers_the_request_in_flight_refuses_new_ones_then_exits_0(
    tmp_path: Path,
) -> None:
    # Kept-alive connections must outlive the wait for the listening socket to close.
    server = Served(tmp_path, keep_alive_seconds=30)
    try:
        with connect(server.port) as in_flight, connect(server.port) as kept_alive:
            kept_alive.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            while not first.endswith(b"hello /first"):
                first += kept_alive.recv(65536)
            in_flight.sendall(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
            wait_until(server.entered.exists, 10, "the slow request did not start")

            server.process.send_signal(signal.SIGTERM)
            # Draining: the listening socket closes, and a request arriving on a
            # kept-alive connection is refused without reaching the app.
            wait_until(server.refuses_connections, 10, "the server still accepts connections")
            kept_alive.sendall(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
            refused = read_all(kept_alive)
            # The request in flight is answered in full.
            in_flight.sendall(b"cd")
            answered = read_all(in_flight)
        assert server.process.wait(30) == 0
    finally:
        server.stop()
    assert refused.startswith(b"HTTP/1.1 503 ")
    assert b"shutting-down" in refused and b"Retry-After: 1" in refused
    assert answered.startswith(b"HTTP/1.1 200 OK") and answered.endswith(b"hello /slow")


def test_the_master_imports_neither_psycopg_nor_kafka() -> None:
    """Its processes patch the standard library for gevent after the fork: a psycopg
    imported before would block each process on every query."""
    probe = (
        "import sys, labelops.worker.server, labelops.worker.config; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'psycopg', 'confluent_kafka'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
