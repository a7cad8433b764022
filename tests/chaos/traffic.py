"""The chaos suite's load and its witnesses: labelers at full speed, an item stream on Kafka,
a reader of the labels topic and a readiness poller.

Labelers are coroutines on raw keep-alive HTTP/1.1 sockets (one thread, one event loop: the
client costs the shared cores as little as the protocol allows, as in bench/httpload.py).
Each claims and submits; half of them ask for the next task with the submission
(`?next=true`). A submission whose answer does not arrive (connection reset, timeout, 503)
is sent again with the same Idempotency-Key until the worker gives a definitive answer: that
is what a careful client does, and it is what proves a retry gets the original answer. Every
2xx receipt goes to the ledger; every answer (or its absence, status 0) is recorded with the
time it came, so a fault's window can be told by status.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from confluent_kafka import Consumer, KafkaError, Producer

from chaos.ledger import Ack, Ledger

QUIET = {"log_level": 0}
LABEL = json.dumps({"value": {"preferred": "a"}}).encode()
REQUEST_TIMEOUT_SECONDS = 30.0
CONNECTION_RETRY_SECONDS = 0.2
MAX_RETRY_AFTER_SECONDS = 2.0
PROBLEM_JSON = "application/problem+json"


def item_message(item_id: str, n: int) -> bytes:
    return json.dumps(
        {
            "id": item_id,
            "payload": {
                "prompt": f"Prompt {n}: which answer is kinder?",
                "responses": [{"id": "a", "text": f"A kind answer {n}."},
                              {"id": "b", "text": f"A curt answer {n}."}],
            },
        }
    ).encode()  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """One answer: when it came, to what (claim, submit, replay) and its status (0: none)."""

    at: float
    kind: str
    status: int
    well_formed: bool = True  # a 503 with Retry-After and a problem detail, a 2xx with JSON


@dataclass(frozen=True)
class Submitted:
    """An acknowledged submission, kept to replay it after a fault."""

    labeler: str
    path: str
    idempotency_key: str
    label_id: str


class _Connection:
    def __init__(self, port: int, token: str) -> None:
        self._port = port
        self._head = f"Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(
        self, path: str, body: bytes | None, headers: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection("127.0.0.1", self._port)
        reader, writer = self._streams
        head = f"POST {path} HTTP/1.1\r\n{self._head}{headers}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        else:
            head += "Content-Length: 0\r\n"
        writer.write(head.encode() + b"\r\n" + (body or b""))
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("closed before the answer")
        status = int(status_line.split(b" ", 2)[1])
        found: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            found[name.strip().lower()] = value.strip()
        length = int(found.get("content-length", "0"))
        return status, found, await reader.readexactly(length) if length else b""

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].transport.abort()
            self._streams = None


class Labelers:
    """n labelers against the worker on `port`, in a thread of their own, until stop()."""

    def __init__(self, port: int, tokens: dict[str, str], ledger: Ledger) -> None:
        self._port = port
        self._tokens = tokens
        self._ledger = ledger
        self.outcomes: list[Outcome] = []
        self.submitted: list[Submitted] = []
        self.in_flight_submissions = 0
        self.abandoned = 0
        self._stopping = False
        self._give_up_at = float("inf")
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping = False
        self._give_up_at = float("inf")
        self._thread = threading.Thread(target=lambda: asyncio.run(self._all()), daemon=True)
        self._thread.start()

    def stop(self, give_up_after: float = 120.0) -> None:
        """Stop claiming; each labeler first gets a definitive answer for the submission it
        is retrying (or gives up after give_up_after seconds: counted as abandoned)."""
        self._give_up_at = time.monotonic() + give_up_after
        self._stopping = True
        if self._thread is not None:
            self._thread.join(give_up_after + REQUEST_TIMEOUT_SECONDS + 10)

    async def _all(self) -> None:
        await asyncio.gather(
            *(
                self._labeler(name, token, with_next=n % 2 == 1)
                for n, (name, token) in enumerate(sorted(self._tokens.items()))
            )
        )

    async def _call(
        self, connection: _Connection, kind: str, path: str, body: bytes | None, headers: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            answer = await asyncio.wait_for(
                connection.request(path, body, headers), REQUEST_TIMEOUT_SECONDS
            )
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            connection.close()
            self.outcomes.append(Outcome(time.monotonic(), kind, 0))
            return 0, {}, b""
        status, found, _ = answer
        well_formed = True
        if status == 503:
            well_formed = "retry-after" in found and found.get("content-type") == PROBLEM_JSON
        self.outcomes.append(Outcome(time.monotonic(), kind, status, well_formed))
        return answer

    async def _pause(self, status: int, headers: dict[str, str]) -> None:
        wait = CONNECTION_RETRY_SECONDS
        if status in (429, 503) and headers.get("retry-after", "").isdigit():
            wait = min(MAX_RETRY_AFTER_SECONDS, float(headers["retry-after"]))
        await asyncio.sleep(wait)

    async def _labeler(self, name: str, token: str, with_next: bool) -> None:
        connection = _Connection(self._port, token)
        task: dict[str, Any] | None = None
        try:
            while not self._stopping:
                if task is None:
                    status, headers, body = await self._call(
                        connection, "claim", "/v1/tasks/claim", None
                    )
                    if status == 200:
                        task = json.loads(body)
                    elif status == 204:
                        await asyncio.sleep(0.1)
                    else:
                        await self._pause(status, headers)
                    continue
                task = await self._submit(connection, name, task, with_next)
        finally:
            connection.close()

    async def _submit(
        self, connection: _Connection, name: str, task: dict[str, Any], with_next: bool
    ) -> dict[str, Any] | None:
        """Until a definitive answer; returns the next task a receipt brought, if any."""
        key = uuid.uuid4().hex
        path = f"/v1/tasks/{quote(task['id'], safe='')}/labels"
        query = "?next=true" if with_next else ""
        while True:
            self.in_flight_submissions += 1
            try:
                status, headers, body = await self._call(
                    connection, "submit", path + query, LABEL, f"Idempotency-Key: {key}\r\n"
                )
            finally:
                self.in_flight_submissions -= 1
            if status in (200, 201):
                receipt = json.loads(body)
                self._ledger.acknowledged(
                    Ack(key, receipt["labelId"], receipt["itemId"], receipt["labeler"])
                )
                self.submitted.append(Submitted(name, path, key, receipt["labelId"]))
                upcoming: dict[str, Any] | None = receipt.get("next") if with_next else None
                return upcoming
            if status == 0 or status >= 500:
                if self._stopping and time.monotonic() > self._give_up_at:
                    self.abandoned += 1
                    return None
                await self._pause(status, headers)
                continue
            return None  # refused for good (the lease expired, the item is full, ...)


def replay(url: str, token: str, submitted: Submitted) -> tuple[int, str | None]:
    """The same submission again, with its Idempotency-Key: the original label's id, or not."""
    answer = requests.post(
        f"{url}{submitted.path}",
        data=LABEL,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": submitted.idempotency_key,
        },
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    label_id = answer.json().get("labelId") if answer.ok else None
    return answer.status_code, label_id


class ItemStream:
    """Produces items to the campaign's items topic, keeping `ahead` items more than the
    labels so far can have completed; every item Kafka acknowledged goes to the ledger."""

    def __init__(
        self,
        kafka: dict[str, Any],
        topic: str,
        ledger: Ledger,
        prefix: str,
        labels_per_item: int,
        ahead: int,
    ) -> None:
        self._topic = topic
        self._ledger = ledger
        self._prefix = prefix
        self._labels_per_item = labels_per_item
        self._ahead = ahead
        self._sent = 0
        self._producer = Producer(
            {
                **kafka,
                "enable.idempotence": True,
                "linger.ms": 20,
                # Kafka may be down for a while: an item waits for it rather than expire.
                "message.timeout.ms": 600_000,
                **QUIET,
            }
        )
        self.failed: list[str] = []
        self._running = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="items", daemon=True)
        self._thread.start()

    @property
    def sent(self) -> int:
        return self._sent

    def resume(self) -> None:
        self._running.set()

    def pause(self, timeout: float = 300.0) -> None:
        """Stop producing and wait until Kafka acknowledged everything sent."""
        self._running.clear()
        deadline = time.monotonic() + timeout
        while self._producer.flush(1.0) and time.monotonic() < deadline:
            pass

    def close(self) -> None:
        self._running.clear()
        self._closed.set()
        self._thread.join(10)
        self._producer.flush(30)

    def _delivered(self, err: KafkaError | None, message: Any) -> None:
        item_id = message.key().decode()
        if err is None:
            self._ledger.item_produced(item_id)
        else:
            self.failed.append(f"{item_id}: {err}")

    def _run(self) -> None:
        while not self._closed.is_set():
            if not self._running.wait(0.2):
                continue
            done = self._ledger.acknowledged_count // self._labels_per_item
            for _ in range(max(0, min(500, done + self._ahead - self._sent))):
                item_id = f"{self._prefix}-{self._sent}"
                try:
                    self._producer.produce(
                        self._topic,
                        key=item_id.encode(),
                        value=item_message(item_id, self._sent),
                        on_delivery=self._delivered,
                    )
                except BufferError:
                    break
                self._sent += 1
            self._producer.poll(0.05)


class TopicWatcher:
    """Reads the labels topic from its start for the whole run: label id -> times seen."""

    def __init__(self, kafka: dict[str, Any], topic: str) -> None:
        self._consumer = Consumer(
            {
                **kafka,
                "group.id": f"chaos-witness-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                **QUIET,
            }
        )
        self._consumer.subscribe([topic])
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labels-topic", daemon=True)
        self._thread.start()

    def seen(self) -> Counter[str]:
        with self._lock:
            return Counter(self._seen)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(10)
        self._consumer.close()

    def _run(self) -> None:
        while not self._closed.is_set():
            for message in self._consumer.consume(1000, 0.5):
                if message.error() is not None:
                    continue
                label_id = json.loads(message.value() or b"{}").get("labelId")
                with self._lock:
                    self._seen[label_id] += 1


class ReadinessPoller:
    """GET /readyz five times a second; records (time, status), 0 when nothing answered."""

    def __init__(self, url: Callable[[], str]) -> None:
        self._url = url
        self.samples: list[tuple[float, int]] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="readyz", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(10)

    def _run(self) -> None:
        session = requests.Session()
        while not self._closed.wait(0.2):
            try:
                status = session.get(f"{self._url()}/readyz", timeout=2).status_code
            except requests.RequestException:
                status = 0
                session = requests.Session()
            self.samples.append((time.monotonic(), status))
