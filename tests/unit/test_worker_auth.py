"""Bearer tokens: who is calling, or a reason and an RFC 6750 challenge."""

from __future__ import annotations

import pytest

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
