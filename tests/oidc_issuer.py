"""A loopback identity provider for tests: a discovery document and a JWKS served by
http.server (plain http, or https with a certificate made here), RSA/EC keys generated here,
tokens signed with PyJWT. Shared by tests/integration (test_oidc, test_worker_identity) and
tests/e2e (test_operator_pool_oidc), so there is one copy of it.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "labelops"
LOOPBACK = "127.0.0.1"


@dataclass
class Issuer:
    """A loopback identity provider: its URL, the keys it publishes, the fetches it served."""

    url: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    jwks_fetches: int = 0
    discovery_issuer: str | None = None


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def published(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(private, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
        alg = "RS256"
    else:
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        alg = "ES256"
    return {**jwk, "kid": kid, "use": "sig", "alg": alg}


def claims(issuer: Issuer, **changes: Any) -> dict[str, Any]:
    """A valid token's claims for anna@example.com (groups coders, ml); a change of None
    drops that claim."""
    now = int(time.time())
    base = {
        "iss": issuer.url,
        "aud": AUDIENCE,
        "sub": "u-123",
        "email": "anna@example.com",
        "groups": ["coders", "ml"],
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


def sign(payload: dict[str, Any], key: Any, kid: str = "key-1", alg: str = "RS256") -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def loopback_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files.
    Processes that should trust the issuer get the certificate as SSL_CERT_FILE."""
    key = rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "labelops test issuer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "issuer.crt", directory / "issuer.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextmanager
def serving_issuer(tls: tuple[Path, Path] | None = None) -> Iterator[Issuer]:
    """An Issuer served on a free loopback port until the block ends: over https with
    tls = (certificate, key), else plain http."""
    state = Issuer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body: dict[str, Any]
            if self.path == "/.well-known/openid-configuration":
                body = {
                    "issuer": state.discovery_issuer or state.url,
                    "jwks_uri": f"{state.url}/keys",
                }
            elif self.path == "/keys":
                state.jwks_fetches += 1
                body = {"keys": list(state.keys)}
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    state.url = f"{scheme}://{LOOPBACK}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
