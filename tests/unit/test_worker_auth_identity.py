"""The worker's principals: a labeler, or a service acting for the labeler it names; OIDC
JWTs remembered until they expire; required skills; the settings that turn them on."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest

from labelops.api.environment import ConfigError
from labelops.api.labeler_pool import Skill
from labelops.api.pool_router import (
    ENV_OIDC_AUDIENCE,
    ENV_OIDC_GROUPS_CLAIM,
    ENV_OIDC_ISSUER,
    ENV_OIDC_USERNAME_CLAIM,
    ENV_REQUIRED_SKILLS,
    ON_BEHALF_OF_HEADER,
)
from labelops.identity.oidc import Identity, OidcVerifier, Refusal, TokenRefused
from labelops.store.labeler_tokens import TokenDigests, token_digest
from labelops.worker.auth import (
    ISSUER_RETRY_SECONDS,
    AuthFailure,
    BearerAuth,
    Service,
    acting_labeler,
    labeler_id_problem,
)
from labelops.worker.config import OidcSettings, oidc_from_env, required_skills_from_env
from labelops.worker.oidc_auth import (
    CACHE_SECONDS,
    OidcAuth,
    looks_like_jwt,
    missing_skills,
    trusted_until,
)

PYTHON = Skill(name="python", groups=["coders"], members=["alice"])
GERMAN = Skill(name="german", groups=["de"])


def failure(outcome: object) -> AuthFailure:
    assert isinstance(outcome, AuthFailure), outcome
    return outcome


# --- services and the on-behalf-of header ---


def digests(labelers: dict[str, str], services: dict[str, str], revision: int = 1) -> TokenDigests:
    return TokenDigests(
        revision,
        {name: token_digest(token.encode()) for name, token in labelers.items()},
        {name: token_digest(token.encode()) for name, token in services.items()},
    )


def test_a_service_token_authenticates_as_the_service() -> None:
    auth = BearerAuth({})
    auth.replace(digests({"alice": "tok-alice"}, {"router": "tok-router"}))
    assert auth.authenticate("Bearer tok-router") == Service("router")
    assert auth.authenticate("Bearer tok-alice") == "alice"
    assert (auth.labelers, auth.services) == (1, 1)
    # Rotated: the old service token is unknown.
    auth.replace(digests({"alice": "tok-alice"}, {"router": "tok-router-2"}, 2))
    assert failure(auth.authenticate("Bearer tok-router")).error == "invalid_token"
    assert auth.authenticate("Bearer tok-router-2") == Service("router")


def test_a_token_shared_by_a_labeler_and_a_service_is_refused() -> None:
    auth = BearerAuth({"alice": "tok-shared"})
    with pytest.raises(ValueError, match=r"'alice' and service 'router' share a token"):
        auth.replace(digests({}, {"router": "tok-shared"}))
    assert auth.authenticate("Bearer tok-shared") == "alice"  # the last good set stays


def test_a_service_acts_for_the_labeler_it_names() -> None:
    assert acting_labeler(Service("router"), "dave@example.com") == "dave@example.com"
    assert acting_labeler(Service("router"), "  dave ") == "dave"
    assert acting_labeler("alice", None) == "alice"


@pytest.mark.parametrize(
    ("principal", "header", "reason", "words"),
    [
        (Service("router"), None, "on-behalf-of-missing", "is missing"),
        (Service("router"), " ", "on-behalf-of-missing", "is missing"),
        (Service("router"), "two words", "on-behalf-of-invalid", "'two words' is not a labeler"),
        (Service("router"), "x" * 254, "on-behalf-of-invalid", "1 to 253 visible ASCII"),
        (Service("router"), "caf\u00e9", "on-behalf-of-invalid", "is not a labeler id"),
        ("alice", "bob", "on-behalf-of-not-allowed", "only for the pool's router"),
        ("alice", "", "on-behalf-of-not-allowed", "send it without the header"),
    ],
)
def test_the_header_is_required_from_a_service_and_refused_from_a_labeler(
    principal: Service | str, header: str | None, reason: str, words: str
) -> None:
    refused = failure(acting_labeler(principal, header))
    assert (refused.status, refused.kind, refused.reason) == (400, "invalid-request", reason)
    assert ON_BEHALF_OF_HEADER in refused.detail and words in refused.detail
    assert refused.headers == {}


@pytest.mark.parametrize("value", ["a", "anna@example.com", "u-123", "x" * 253, "a+b:c/d"])
def test_labeler_ids(value: str) -> None:
    assert labeler_id_problem(value) is None


@pytest.mark.parametrize("value", ["", " a", "a b", "tab\t", "x" * 254, "\u00e9"])
def test_not_labeler_ids(value: str) -> None:
    problem = labeler_id_problem(value)
    assert problem is not None and "allowed 1 to 253 visible ASCII" in problem


# --- required skills ---


def test_missing_skills_come_in_the_order_required() -> None:
    assert missing_skills("anna", ["coders"], [PYTHON, GERMAN]) == ("german",)
    assert missing_skills("alice", [], [PYTHON, GERMAN]) == ("german",)
    assert missing_skills("anna", ["coders", "de"], [PYTHON, GERMAN]) == ()
    assert missing_skills("anna", [], [PYTHON, GERMAN]) == ("python", "german")
    assert missing_skills("anna", [], []) == ()


def test_a_token_labeler_without_a_required_skill_is_403() -> None:
    auth = BearerAuth({"alice": "tok-alice", "bob": "tok-bob"}, required_skills=[PYTHON])
    assert auth.authenticate("Bearer tok-alice") == "alice"  # a member of python
    refused = failure(auth.authenticate("Bearer tok-bob"))
    assert (refused.status, refused.kind) == (403, "missing-skills")
    assert refused.problem_extensions() == {"missingSkills": ["python"], "reason": "missing-skills"}
    assert "labeler 'bob' lacks the skill this campaign requires: python" in refused.detail
    # The router is trusted with skills: it routes only labelers who hold them.
    auth.replace(digests({}, {"router": "tok-router"}))
    assert auth.authenticate("Bearer tok-router") == Service("router")


# --- OIDC ---


class FakeVerifier(OidcVerifier):
    """Counts verifications; answers with a fixed identity or refusal."""

    def __init__(self, outcome: Identity | TokenRefused) -> None:
        super().__init__("http://127.0.0.1:1", "labelops", username_claim="email")
        self.outcome = outcome
        self.calls = 0

    def verify(self, token: str) -> Identity:
        self.calls += 1
        if isinstance(self.outcome, TokenRefused):
            raise self.outcome
        return self.outcome


def token(exp: float, **claims: Any) -> str:
    return jwt.encode({"exp": int(exp), **claims}, "k" * 32, algorithm="HS256")


class Clock:
    def __init__(self) -> None:
        self.wall = 1_000_000.0
        self.mono = 50.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def oidc_auth(
    outcome: Identity | TokenRefused, clock: Clock, skills: list[Skill] | None = None
) -> tuple[BearerAuth, FakeVerifier]:
    verifier = FakeVerifier(outcome)
    oidc = OidcAuth(verifier, wall=lambda: clock.wall, monotonic=lambda: clock.mono)
    return BearerAuth({}, oidc=oidc, required_skills=skills or []), verifier


ANNA = Identity("anna@example.com", ("coders",), "http://127.0.0.1:1")


def test_a_verified_jwt_is_remembered_until_it_expires() -> None:
    clock = Clock()
    auth, verifier = oidc_auth(ANNA, clock)
    ran_off_loop: list[bool] = []

    def run_blocking(work: Any) -> Any:
        ran_off_loop.append(True)
        return work()

    bearer = "Bearer " + token(clock.wall + 60)
    assert auth.authenticate(bearer, run_blocking) == "anna@example.com"
    assert auth.authenticate(bearer, run_blocking) == "anna@example.com"
    assert verifier.calls == 1 and ran_off_loop == [True]
    clock.advance(61)
    assert auth.authenticate(bearer, run_blocking) == "anna@example.com"
    assert verifier.calls == 2, "verified again once expired (the verifier refuses it then)"


def test_a_long_lived_jwt_is_verified_again_after_the_cache_period() -> None:
    clock = Clock()
    auth, verifier = oidc_auth(ANNA, clock)
    bearer = "Bearer " + token(clock.wall + 3600)
    auth.authenticate(bearer)
    clock.advance(CACHE_SECONDS - 1)
    auth.authenticate(bearer)
    assert verifier.calls == 1
    clock.advance(2)
    auth.authenticate(bearer)
    assert verifier.calls == 2


def test_trusted_until_is_the_earlier_of_exp_and_the_cache_period() -> None:
    assert trusted_until(exp=1060, now_wall=1000, now_monotonic=5) == 65
    assert trusted_until(exp=10_000, now_wall=1000, now_monotonic=5) == 5 + CACHE_SECONDS
    assert trusted_until(exp=990, now_wall=1000, now_monotonic=5) == 5  # within leeway only


def test_refusals_are_401_with_the_reason_and_never_remembered() -> None:
    clock = Clock()
    refusal = TokenRefused(Refusal.WRONG_AUDIENCE, "aud 'x' is not 'labelops'")
    auth, verifier = oidc_auth(refusal, clock)
    bearer = "Bearer " + token(clock.wall + 60)
    for _ in range(2):
        refused = failure(auth.authenticate(bearer))
        assert (refused.status, refused.error, refused.reason) == (
            401,
            "invalid_token",
            "wrong-audience",
        )
        assert refused.headers == {
            "WWW-Authenticate": 'Bearer realm="labelops", error="invalid_token"'
        }
        assert "(wrong-audience): aud 'x' is not 'labelops'" in refused.detail
    assert verifier.calls == 2


def test_an_unreachable_issuer_is_503_with_retry_after() -> None:
    clock = Clock()
    refusal = TokenRefused(Refusal.ISSUER_UNAVAILABLE, "discovery failed: connection refused")
    auth, _ = oidc_auth(refusal, clock)
    refused = failure(auth.authenticate("Bearer " + token(clock.wall + 60)))
    assert (refused.status, refused.kind, refused.reason) == (
        503,
        "issuer-unavailable",
        "issuer-unavailable",
    )
    assert refused.headers == {"Retry-After": str(ISSUER_RETRY_SECONDS)}
    assert refused.problem_extensions()["retryAfter"] == ISSUER_RETRY_SECONDS
    assert "connection refused" in refused.detail


def test_a_jwt_labeler_needs_the_required_skills_through_their_groups() -> None:
    clock = Clock()
    auth, _ = oidc_auth(ANNA, clock, [PYTHON, GERMAN])
    refused = failure(auth.authenticate("Bearer " + token(clock.wall + 60)))
    assert refused.status == 403 and refused.extensions == {"missingSkills": ["german"]}
    assert "lacks the skill this campaign requires: german" in refused.detail


def test_a_username_that_is_no_labeler_id_is_refused() -> None:
    clock = Clock()
    auth, _ = oidc_auth(Identity("Anna Smith", (), "http://127.0.0.1:1"), clock)
    refused = failure(auth.authenticate("Bearer " + token(clock.wall + 60)))
    assert (refused.status, refused.reason) == (401, "missing-claim")
    assert "claim 'email': 'Anna Smith' is not a labeler id" in refused.detail


def test_without_oidc_a_jwt_is_just_an_unknown_token() -> None:
    refused = failure(BearerAuth({}).authenticate("Bearer " + token(time.time() + 60)))
    assert refused.error == "invalid_token" and "not recognised" in refused.detail


@pytest.mark.parametrize(
    ("value", "jwt_like"),
    [
        ("aaa.bbb.ccc", True),
        ("eyJh-_.eyJ9.sig_-", True),
        ("aaa.bbb", False),
        ("aaa.bbb.ccc.ddd", False),
        ("aaa..ccc", False),
        ("aaa.bbb.c c", False),
        ("tok-alice", False),
    ],
)
def test_what_looks_like_a_jwt(value: str, jwt_like: bool) -> None:
    assert looks_like_jwt(value) is jwt_like


# --- settings ---


def test_oidc_settings_from_the_environment() -> None:
    assert oidc_from_env({}) is None
    assert oidc_from_env(
        {
            ENV_OIDC_ISSUER: "https://id.example.com",
            ENV_OIDC_AUDIENCE: "labelops",
            ENV_OIDC_USERNAME_CLAIM: "email",
        }
    ) == OidcSettings("https://id.example.com", "labelops", "email", "groups")
    assert oidc_from_env(
        {
            ENV_OIDC_ISSUER: "http://127.0.0.1:9000",
            ENV_OIDC_AUDIENCE: "a",
            ENV_OIDC_GROUPS_CLAIM: "roles",
        }
    ) == OidcSettings("http://127.0.0.1:9000", "a", "sub", "roles")


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({ENV_OIDC_ISSUER: "https://id.example.com"}, f"{ENV_OIDC_AUDIENCE} is not"),
        ({ENV_OIDC_AUDIENCE: "labelops"}, f"{ENV_OIDC_ISSUER} is not"),
        (
            {ENV_OIDC_ISSUER: "http://id.example.com", ENV_OIDC_AUDIENCE: "a"},
            f"{ENV_OIDC_ISSUER} 'http://id.example.com' must be an https URL",
        ),
    ],
)
def test_bad_oidc_settings_name_the_variable(environ: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        oidc_from_env(environ)


def test_required_skills_from_the_environment() -> None:
    assert required_skills_from_env({}) == ()
    raw = json.dumps([PYTHON.model_dump(by_alias=True), GERMAN.model_dump(by_alias=True)])
    assert required_skills_from_env({ENV_REQUIRED_SKILLS: raw}) == (PYTHON, GERMAN)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("not json", "is not a JSON list of skills"),
        ('[{"name": "Python!", "groups": ["a"]}]', r"0\.name"),
        ('[{"name": "py", "group": ["a"]}]', r"0\.group"),
        ('[{"name": "py", "groups": ["a"]}, {"name": "py", "members": ["b"]}]', "twice"),
    ],
)
def test_bad_required_skills_name_the_variable(raw: str, words: str) -> None:
    with pytest.raises(ConfigError, match=rf"{ENV_REQUIRED_SKILLS}.*{words}"):
        required_skills_from_env({ENV_REQUIRED_SKILLS: raw})
