"""Bearer tokens: who is calling, or a reason and an RFC 6750 challenge."""

from __future__ import annotations

import pytest

from labelops.store.labeler_tokens import TokenDigests, token_digest
from labelops.worker.auth import AuthFailure, BearerAuth

AUTH = BearerAuth({"alice": "tok-alice", "bob": "tök-bob"})


@pytest.mark.parametrize(
    ("header", "labeler"),
    [
        ("Bearer tok-alice", "alice"),
        ("bearer   tok-alice  ", "alice"),  # the scheme is case-insensitive
        # WSGI hands headers over as latin-1 text; a UTF-8 token still matches.
        ("Bearer " + "tök-bob".encode().decode("latin-1"), "bob"),
    ],
)
def test_known_tokens_name_their_labeler(header: str, labeler: str) -> None:
    assert AUTH.authenticate(header) == labeler


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (None, None),
        ("", None),
        ("Basic dG9rLWFsaWNl", "invalid_request"),
        ("Bearer", "invalid_request"),
        ("Bearer tok-alic", "invalid_token"),
        ("Bearer tok-alice2", "invalid_token"),
        ("Bearer TOK-ALICE", "invalid_token"),
    ],
)
def test_other_headers_are_refused_with_a_challenge(header: str | None, error: str | None) -> None:
    outcome = AUTH.authenticate(header)
    assert isinstance(outcome, AuthFailure)
    assert outcome.error == error
    assert outcome.www_authenticate.startswith('Bearer realm="labelops"')
    assert (f'error="{error}"' in outcome.www_authenticate) == (error is not None)
    assert "tok-alice" not in outcome.detail


def test_no_labelers_means_nobody_gets_in() -> None:
    assert isinstance(BearerAuth({}).authenticate("Bearer anything"), AuthFailure)


def test_the_campaigns_digests_replace_each_other_and_keep_the_fixed_tokens() -> None:
    auth = BearerAuth({"fixed": "tok-fixed"})
    auth.replace(TokenDigests(1, {"carol": token_digest(b"tok-carol-1")}))
    assert auth.authenticate("Bearer tok-carol-1") == "carol"
    # Rotated: the old token is refused from the next revision on, the new one accepted.
    auth.replace(TokenDigests(2, {"carol": token_digest(b"tok-carol-2")}))
    assert isinstance(auth.authenticate("Bearer tok-carol-1"), AuthFailure)
    assert auth.authenticate("Bearer tok-carol-2") == "carol"
    # Removed.
    auth.replace(TokenDigests(3, {}))
    assert isinstance(auth.authenticate("Bearer tok-carol-2"), AuthFailure)
    assert auth.authenticate("Bearer tok-fixed") == "fixed"
    assert (auth.revision, auth.labelers) == (3, 1)


def test_a_digest_of_another_labelers_fixed_token_is_refused_and_changes_nothing() -> None:
    auth = BearerAuth({"fixed": "tok-fixed"})
    auth.replace(TokenDigests(1, {"carol": token_digest(b"tok-carol")}))
    with pytest.raises(ValueError, match="'fixed' and 'mallory' share a token"):
        auth.replace(TokenDigests(2, {"mallory": token_digest(b"tok-fixed")}))
    assert auth.authenticate("Bearer tok-fixed") == "fixed"
    assert auth.authenticate("Bearer tok-carol") == "carol"
    assert auth.revision == 1
