"""A tokens Secret read as labeler digests, and what a change of it does to the stored ones."""

from __future__ import annotations

import base64
import hashlib

from labelops.operator.token_secret import read_token_secret
from labelops.store.labeler_tokens import TokenChanges, token_changes


def secret(**tokens: str) -> dict[str, object]:
    return {
        "metadata": {"name": "crew"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in tokens.items()},
    }


def sha(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def test_every_key_is_a_labeler_with_the_digest_of_its_token() -> None:
    reading = read_token_secret("ns", secret(alice="tok-a", bob="tök-b\n"))
    # The newline a Secret made from a file ends in is not part of the token.
    assert reading.digests == {"alice": sha("tok-a"), "bob": sha("tök-b")}
    assert reading.problem is None


def test_an_emptied_value_is_a_labeler_who_cannot_sign_in() -> None:
    reading = read_token_secret("ns", secret(alice="tok-a", bob=" \n"))
    assert reading.digests == {"alice": sha("tok-a")}
    assert reading.problem is None


def test_a_shared_token_lets_none_of_its_holders_in_and_says_which_keys() -> None:
    reading = read_token_secret("ns", secret(alice="same", bob="same", carol="tok-c"))
    assert reading.digests == {"carol": sha("tok-c")}
    assert reading.problem is not None
    assert "spec.labelers.tokenSecretRef: Secret ns/crew" in reading.problem
    assert "'alice', 'bob' hold the same token" in reading.problem
    assert "same" not in reading.problem.replace("the same token", "")


def test_a_secret_without_data_lets_nobody_in() -> None:
    assert read_token_secret("ns", {"metadata": {"name": "crew"}}).digests == {}


def test_changes_name_added_rotated_and_removed_labelers() -> None:
    stored = {"alice": sha("a"), "bob": sha("b"), "carol": sha("c")}
    desired = {"alice": sha("a"), "bob": sha("b2"), "dave": sha("d")}
    changes = token_changes(stored, desired)
    assert changes == TokenChanges(added=("dave",), changed=("bob",), removed=("carol",))
    assert changes.describe() == "added dave; changed bob; removed carol"
    assert token_changes(stored, stored).empty
