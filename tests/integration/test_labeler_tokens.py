"""Labelers' token digests in a campaign's schema on real PostgreSQL: the operator's writes
(added, rotated, swapped, removed, in one transaction each) and a worker's auth following them
through TokenRefresh, without a restart."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool
from test_store_support import unique_name

from labelops.store.labeler_tokens import (
    TokenChanges,
    read_token_digests,
    replace_token_digests,
    token_digest,
)
from labelops.store.migrations import migrate
from labelops.worker.auth import AuthFailure, BearerAuth, TokenRefresh

pytestmark = pytest.mark.integration


def sha(token: str) -> bytes:
    return token_digest(token.encode())


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    name = unique_name("tok")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        migrate(conn, name)
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_writes_follow_the_secret_and_move_the_revision_only_on_change(
    postgres_dsn: str, schema: str
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        first = read_token_digests(conn, schema, None)
        assert first is not None and first.by_labeler == {}
        assert read_token_digests(conn, schema, first.revision) is None

        added = replace_token_digests(conn, schema, {"alice": sha("a"), "bob": sha("b")})
        assert added == TokenChanges(added=("alice", "bob"))
        after_add = read_token_digests(conn, schema, first.revision)
        assert after_add is not None
        assert after_add.by_labeler == {"alice": sha("a"), "bob": sha("b")}

        # The same Secret again writes nothing: no revision a worker would reload for.
        assert replace_token_digests(conn, schema, {"alice": sha("a"), "bob": sha("b")}).empty
        assert read_token_digests(conn, schema, after_add.revision) is None

        # Two labelers swap tokens: the unique digest index must not refuse it.
        swapped = replace_token_digests(conn, schema, {"alice": sha("b"), "bob": sha("a")})
        assert swapped == TokenChanges(changed=("alice", "bob"))
        removed = replace_token_digests(conn, schema, {"bob": sha("a")})
        assert removed == TokenChanges(removed=("alice",))
        last = read_token_digests(conn, schema, after_add.revision)
        assert last is not None and last.by_labeler == {"bob": sha("a")}
        assert last.revision == after_add.revision + 2


def test_digests_of_the_wrong_size_or_shared_are_refused_before_anything_is_written(
    postgres_dsn: str, schema: str
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        replace_token_digests(conn, schema, {"alice": sha("a")})
        with pytest.raises(ValueError, match="'bob': a token digest is 32 bytes"):
            replace_token_digests(conn, schema, {"bob": b"short"})
        with pytest.raises(ValueError, match="share a token"):
            replace_token_digests(conn, schema, {"alice": sha("x"), "bob": sha("x")})
        # And the table's own constraints hold whoever writes.
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                sql.SQL("INSERT INTO {} VALUES ('mallory', '\\x00')").format(
                    sql.Identifier(schema, "labeler_tokens")
                )
            )
        now = read_token_digests(conn, schema, None)
        assert now is not None and now.by_labeler == {"alice": sha("a")}


def test_concurrent_writers_take_turns_and_the_last_write_wins(
    postgres_dsn: str, schema: str
) -> None:
    versions = [{"alice": sha(f"a{n}"), "bob": sha(f"b{n}")} for n in range(8)]
    errors: list[BaseException] = []

    def write(digests: dict[str, bytes]) -> None:
        try:
            with psycopg.connect(postgres_dsn, autocommit=True) as conn:
                replace_token_digests(conn, schema, digests)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=write, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        final = read_token_digests(conn, schema, None)
    assert final is not None and final.by_labeler in versions


def test_a_workers_auth_follows_rotation_and_removal_without_a_restart(
    postgres_dsn: str, schema: str
) -> None:
    with ConnectionPool(postgres_dsn, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        auth = BearerAuth({})
        refresh = TokenRefresh(pool, schema, auth)
        with pool.connection() as conn:
            replace_token_digests(conn, schema, {"carol": sha("tok-carol-1")})
        assert refresh.refresh()
        assert auth.authenticate("Bearer tok-carol-1") == "carol"

        with pool.connection() as conn:
            replace_token_digests(conn, schema, {"carol": sha("tok-carol-2")})
        assert auth.authenticate("Bearer tok-carol-1") == "carol", "changed before a poll"
        assert refresh.refresh()
        assert isinstance(auth.authenticate("Bearer tok-carol-1"), AuthFailure)
        assert auth.authenticate("Bearer tok-carol-2") == "carol"

        with pool.connection() as conn:
            replace_token_digests(conn, schema, {})
        assert refresh.refresh()
        assert isinstance(auth.authenticate("Bearer tok-carol-2"), AuthFailure)
