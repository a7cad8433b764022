"""/healthz, /readyz and /metrics of the learner, on a small threaded HTTP server.

Alive while the main loop turns (a loop stuck for longer than the allowance fails the
liveness probe, so Kubernetes restarts the pod); ready once both topics are read to their
end and a model exists or the learner is waiting for labels it can train on.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, dict[str, Any]]]


def serve(
    host: str, port: int, registry: CollectorRegistry, alive: Check, ready: Check
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path in ("/healthz", "/readyz"):
                ok, details = (alive if self.path == "/healthz" else ready)()
                body = json.dumps({"status": "ok" if ok else "fail", **details}).encode()
                self._send(200 if ok else 503, body, "application/json")
            else:
                self._send(404, b'{"status": "not found"}', "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="learner-http", daemon=True).start()
    return server
