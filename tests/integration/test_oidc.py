"""OIDC bearer JWTs verified against a real HTTP issuer on loopback: a discovery document and
a JWKS served by http.server (tests/oidc_issuer.py), keys generated here. Every refusal
carries its reason; a new key id appearing in the JWKS (rotation) is fetched and accepted.
No stack needed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from labelops.identity.oidc import Identity, OidcVerifier, Refusal, TokenRefused
from oidc_issuer import AUDIENCE, Issuer, claims, published, rsa_key, serving_issuer, sign


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with serving_issuer() as state:
        yield state


@pytest.fixture(scope="module")
def signing_key(issuer: Issuer) -> rsa.RSAPrivateKey:
    key = rsa_key()
    issuer.keys.append(published(key, "key-1"))
    return key


@pytest.fixture
def verifier(issuer: Issuer, signing_key: rsa.RSAPrivateKey) -> OidcVerifier:
    return OidcVerifier(
        issuer.url,
        AUDIENCE,
        username_claim="email",
        refetch_cooldown_seconds=0.0,
    )


def refused(verifier: OidcVerifier, token: str) -> TokenRefused:
    with pytest.raises(TokenRefused) as caught:
        verifier.verify(token)
    return caught.value


def test_a_valid_token_gives_the_labeler_and_groups(
    issuer: Issuer, signing_key: rsa.RSAPrivateKey, verifier: OidcVerifier
) -> None:
    identity = verifier.verify(sign(claims(issuer), signing_key))
    assert identity == Identity("anna@example.com", ("coders", "ml"), issuer.url)


def test_keys_are_cached_across_tokens(
    issuer: Issuer, signing_key: rsa.RSAPrivateKey, verifier: OidcVerifier
) -> None:
    verifier.verify(sign(claims(issuer), signing_key))
    fetched = issuer.jwks_fetches
    for _ in range(5):
        verifier.verify(sign(claims(issuer, email="bob@example.com"), signing_key))
    assert issuer.jwks_fetches == fetched


def test_an_expired_token_is_refused_but_clock_skew_within_leeway_is_not(
    issuer: Issuer, signing_key: rsa.RSAPrivateKey, verifier: OidcVerifier
) -> None:
    now = int(time.time())
    expired = refused(verifier, sign(claims(issuer, exp=now - 120), signing_key))
    assert expired.reason is Refusal.EXPIRED and expired.reason.http_status == 401
    assert verifier.verify(sign(claims(issuer, exp=now - 5), signing_key)).labeler


def test_a_token_not_yet_valid_is_refused(
    issuer: Issuer, signing_key: rsa.RSAPrivateKey, verifier: OidcVerifier
) -> None:
    token = sign(claims(issuer, nbf=int(time.time()) + 600), signing_key)
    assert refused(verifier, token).reason is Refusal.NOT_YET_VALID


def test_a_token_for_another_audience_is_refused(
    issuer: Issuer, signing_key: rsa.RSAPrivateKey, verifier: OidcVerifier
) -> None:
    refusal = refused(verifier, sign(claims(issuer, aud="another-app"), signing_key))
    assert refusal.reason is Refusal.WRONG_AUDIENCE


def test_a_token_from_another_issuer_is_refused(
    issuer: Issuer, signing_key: rsa.RSAPrivateKey, verifier: OidcVerifier
) -> None:
    token = sign(claims(issuer, iss="https://evil.example.com"), signing_key)
    assert refused(verifier, token).reason is Refusal.WRONG_ISSUER


def test_a_token_without_expiry_or_username_is_refused(
    issuer: Issuer, signing_key: rsa.RSAPrivateKey, verifier: OidcVerifier
) -> None:
    no_exp = refused(verifier, sign(claims(issuer, exp=None), signing_key))
    assert no_exp.reason is Refusal.MISSING_CLAIM and "exp" in no_exp.detail
    no_email = refused(verifier, sign(claims(issuer, email=None), signing_key))
    assert no_email.reason is Refusal.MISSING_CLAIM and "usernameClaim" in no_email.detail


def test_a_key_id_the_issuer_does_not_publish_is_refused(
    issuer: Issuer, verifier: OidcVerifier
) -> None:
    stranger = rsa_key()
    refusal = refused(verifier, sign(claims(issuer), stranger, kid="not-published"))
    assert refusal.reason is Refusal.UNKNOWN_KEY and "not-published" in refusal.detail


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_alg_none_is_refused(issuer: Issuer, verifier: OidcVerifier) -> None:
    token = f"{b64({'alg': 'none', 'kid': 'key-1', 'typ': 'JWT'})}.{b64(claims(issuer))}."
    refusal = refused(verifier, token)
    assert refusal.reason is Refusal.ALGORITHM_NOT_ALLOWED and "'none'" in refusal.detail


def test_hs256_signed_with_the_public_key_is_refused(
    issuer: Issuer, signing_key: rsa.RSAPrivateKey, verifier: OidcVerifier
) -> None:
    public_pem = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64({"alg": "HS256", "kid": "key-1", "typ": "JWT"})
    body = f"{header}.{b64(claims(issuer))}"
    mac = hmac.new(public_pem, body.encode(), hashlib.sha256).digest()
    token = f"{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert refused(verifier, token).reason is Refusal.ALGORITHM_NOT_ALLOWED


def test_a_tampered_payload_fails_the_signature(
    issuer: Issuer, signing_key: rsa.RSAPrivateKey, verifier: OidcVerifier
) -> None:
    header, _, signature = sign(claims(issuer), signing_key).split(".")
    forged = b64(claims(issuer, email="admin@example.com", groups=["admins"]))
    refusal = refused(verifier, f"{header}.{forged}.{signature}")
    assert refusal.reason is Refusal.BAD_SIGNATURE


def test_a_token_whose_alg_does_not_match_its_key_is_refused(
    issuer: Issuer, verifier: OidcVerifier
) -> None:
    # An ES256 token naming the RSA key-1.
    token = sign(claims(issuer), ec.generate_private_key(ec.SECP256R1()), alg="ES256")
    refusal = refused(verifier, token)
    assert refusal.reason is Refusal.ALGORITHM_NOT_ALLOWED and "RS256" in refusal.detail


def test_garbage_is_refused_as_malformed(verifier: OidcVerifier) -> None:
    assert refused(verifier, "not.a.jwt").reason is Refusal.MALFORMED


def test_a_rotated_key_is_fetched_when_a_token_names_it(
    issuer: Issuer, signing_key: rsa.RSAPrivateKey, verifier: OidcVerifier
) -> None:
    verifier.verify(sign(claims(issuer), signing_key))
    fetched = issuer.jwks_fetches
    rotated = ec.generate_private_key(ec.SECP256R1())
    issuer.keys.append(published(rotated, "key-2"))
    try:
        token = sign(claims(issuer, email="carl@example.com"), rotated, "key-2", "ES256")
        assert verifier.verify(token).labeler == "carl@example.com"
        assert issuer.jwks_fetches == fetched + 1
    finally:
        issuer.keys.pop()


def test_unknown_key_ids_do_not_refetch_within_the_cooldown(
    issuer: Issuer, signing_key: rsa.RSAPrivateKey
) -> None:
    patient = OidcVerifier(issuer.url, AUDIENCE, refetch_cooldown_seconds=3600.0)
    patient.verify(sign(claims(issuer), signing_key))
    fetched = issuer.jwks_fetches
    for i in range(5):
        refusal = refused(patient, sign(claims(issuer), rsa_key(), kid=f"random-{i}"))
        assert refusal.reason is Refusal.UNKNOWN_KEY
    assert issuer.jwks_fetches == fetched


def test_an_unreachable_issuer_is_a_503_not_the_token_s_fault(
    issuer: Issuer, signing_key: rsa.RSAPrivateKey
) -> None:
    closed = OidcVerifier("http://127.0.0.1:9", AUDIENCE, http_timeout_seconds=2.0)
    refusal = refused(closed, sign(claims(issuer), signing_key))
    assert refusal.reason is Refusal.ISSUER_UNAVAILABLE and refusal.reason.http_status == 503


def test_a_discovery_document_for_another_issuer_is_refused(
    issuer: Issuer, signing_key: rsa.RSAPrivateKey
) -> None:
    issuer.discovery_issuer = "https://impostor.example.com"
    try:
        fresh = OidcVerifier(issuer.url, AUDIENCE)
        refusal = refused(fresh, sign(claims(issuer), signing_key))
        assert refusal.reason is Refusal.ISSUER_UNAVAILABLE and "impostor" in refusal.detail
    finally:
        issuer.discovery_issuer = None


@pytest.mark.parametrize(
    "url", ["http://idp.example.com", "ftp://127.0.0.1/", "https://", "idp.example.com"]
)
def test_an_issuer_not_on_https_is_refused_at_configuration(url: str) -> None:
    with pytest.raises(ValueError, match=r"identity.oidc.issuer .* must be an https URL"):
        OidcVerifier(url, AUDIENCE)
