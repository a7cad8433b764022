"""A backend that is unreachable must show in status (Ready=False with the reason) and must
heal by itself when the backend returns, at create and at delete.

The shared stack cannot be stopped under other tests, so the operator reaches the backend
through a TCP relay owned by the test; closing the relay is the outage.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from kubernetes import client
from test_operator_harness import (
    apply,
    campaign_documents,
    condition,
    crd_namespace,
    delete_campaign,
    kstatus_of,
    role_and_schema,
    running_operator,
    wait_campaign,
    wait_event,
    wait_ready,
)

from labelops.api.naming import CampaignNames

pytestmark = pytest.mark.e2e


class Relay:
    """Forwards 127.0.0.1:<port> to a backend while open; refuses connections while closed."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        # Bound but not listening: the port is ours (no other process can take it) and
        # connections to it are refused, exactly like a backend that is down.
        self._listener: socket.socket | None = self._bind(0)
        self.port = int(self._listener.getsockname()[1])
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    @staticmethod
    def _bind(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    def open(self) -> None:
        listener = self._listener or self._bind(self.port)
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        """Stop listening and cut every relayed connection, like a backend going away."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                downstream, _ = listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open += [downstream, upstream]
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="module")
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    with crd_namespace(kube_api, "e2e-outage") as name:
        yield name


def test_kafka_unreachable_at_create_is_reported_and_heals_when_it_returns(
    kube_api: client.ApiClient,
    stack_env: dict[str, str],
    namespace: str,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    host, port = kafka_bootstrap.rsplit(":", 1)
    relay = Relay((host, int(port)))  # not open yet: Kafka is "down"
    bootstrap = f"127.0.0.1:{relay.port}"
    state = tmp_path_factory.mktemp("operator")
    with running_operator(
        state,
        stack_env,
        namespace,
        LABELOPS_KAFKA_BOOTSTRAP=bootstrap,
        # workers would reach Kafka directly; only the operator's path is cut
        LABELOPS_WORKER_KAFKA_BOOTSTRAP=kafka_bootstrap,
    ) as operator:
        try:
            apply(kube_api, campaign_documents(namespace, "kafka-down", reclaimPolicy="Delete"))
            down = wait_campaign(
                kube_api,
                namespace,
                "kafka-down",
                lambda o: condition(o, "Ready").get("reason") == "KafkaUnavailable",
                "Ready=False because Kafka is unavailable",
                operator=operator,
            )
            ready = condition(down, "Ready")
            assert ready["status"] == "False"
            assert bootstrap in ready["message"] and "unreachable" in ready["message"]
            topics = condition(down, "TopicsReady")
            assert (topics["status"], topics["reason"]) == ("Unknown", "KafkaUnavailable")
            assert condition(down, "Reconciling")["status"] == "True"
            assert condition(down, "Stalled").get("status") != "True"
            assert down is not None and "observedGeneration" not in down["status"]
            assert kstatus_of(down) == "InProgress", "a retried outage is not a failure"
            event = wait_event(kube_api, namespace, "kafka-down", "KafkaUnavailable")
            assert event["type"] == "Warning"

            relay.open()  # Kafka is back
            healed = wait_ready(kube_api, namespace, "kafka-down", timeout=90, operator=operator)
            assert condition(healed, "TopicsReady")["status"] == "True"
        finally:
            delete_campaign(kube_api, namespace, "kafka-down")
            wait_campaign(kube_api, namespace, "kafka-down", lambda o: o is None, "deleted")
            relay.close()


def test_delete_while_postgres_is_unreachable_waits_visibly_then_completes(
    kube_api: client.ApiClient,
    stack_env: dict[str, str],
    namespace: str,
    postgres_dsn: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    url = urlsplit(postgres_dsn)
    relay = Relay((url.hostname or "127.0.0.1", url.port or 5432))
    relay.open()
    netloc = f"{url.username}:{url.password}@127.0.0.1:{relay.port}"
    relayed_dsn = urlunsplit(url._replace(netloc=netloc))
    names = CampaignNames(namespace, "pg-down")
    state = tmp_path_factory.mktemp("operator")
    with running_operator(
        state, stack_env, namespace, LABELOPS_POSTGRES_DSN=relayed_dsn
    ) as operator:
        apply(kube_api, campaign_documents(namespace, "pg-down", reclaimPolicy="Delete"))
        wait_ready(kube_api, namespace, "pg-down", operator=operator)

        relay.close()  # Postgres is "down"
        delete_campaign(kube_api, namespace, "pg-down")
        blocked = wait_campaign(
            kube_api,
            namespace,
            "pg-down",
            lambda o: condition(o, "SchemaReady").get("reason") == "PostgresUnavailable",
            "reporting that Postgres blocks the deletion",
            operator=operator,
        )
        assert blocked is not None, "the finalizer must keep the campaign while data remains"
        assert blocked["metadata"].get("deletionTimestamp")
        message = condition(blocked, "SchemaReady")["message"]
        assert "reclaimPolicy Delete" in message and "blocked" in message
        assert condition(blocked, "Ready")["reason"] == "PostgresUnavailable"
        event = wait_event(kube_api, namespace, "pg-down", "PostgresUnavailable", "blocked")
        assert event["type"] == "Warning"
        assert role_and_schema(postgres_dsn, names.role)[1] == names.schema

        relay.open()  # Postgres is back
        wait_campaign(kube_api, namespace, "pg-down", lambda o: o is None, "deleted", 90, operator)
        assert role_and_schema(postgres_dsn, names.role) == (None, None)
    relay.close()
