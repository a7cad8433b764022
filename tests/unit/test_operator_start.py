"""`labelops operator` refuses to start where it could never serve: an API server without the
campaign CRD (the operator watches no CRDs, so it would idle forever: exiting lets its pod
restart until the CRD is installed), or a namespace list RBAC cannot grant.

The API server is a loopback HTTP server answering discovery, as a real one would; the
operator is the real command in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from labelops.api.campaign import GROUP, PLURAL, VERSION


def discovery_server(resources: list[str]) -> ThreadingHTTPServer:
    class Discovery(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != f"/apis/{GROUP}/{VERSION}":
                self.send_error(404)
                return
            body = json.dumps(
                {"kind": "APIResourceList", "resources": [{"name": r} for r in resources]}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Discovery)


@pytest.fixture
def api_server(request: pytest.FixtureRequest) -> Iterator[str]:
    server = discovery_server(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_operator(server: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    env = {
        "KUBECONFIG": str(kubeconfig),
        "PATH": "/usr/bin:/bin",
        # Never contacted: the operator must stop before it needs its backends.
        "LABELOPS_KAFKA_BOOTSTRAP": "127.0.0.1:9",
        "LABELOPS_POSTGRES_DSN": "host=127.0.0.1 port=9 dbname=x user=x",
    }
    return subprocess.run(
        [sys.executable, "-m", "labelops.cli", "operator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("api_server", [["labelerpools"]], indirect=True)
def test_without_the_crd_the_operator_exits_saying_what_to_install(
    api_server: str, tmp_path: Path
) -> None:
    done = run_operator(api_server, tmp_path)
    assert done.returncode == 3, done.stderr
    assert f"does not serve {PLURAL}.{GROUP}/{VERSION}" in done.stderr
    assert "install the CRD" in done.stderr


@pytest.mark.parametrize("api_server", [[PLURAL]], indirect=True)
def test_a_namespace_pattern_is_refused_before_anything_starts(
    api_server: str, tmp_path: Path
) -> None:
    done = run_operator(api_server, tmp_path, "--namespace", "team-a", "--namespace", "team-*")
    assert done.returncode == 2, done.stderr
    assert "--namespace 'team-*' is not a namespace name" in done.stderr
