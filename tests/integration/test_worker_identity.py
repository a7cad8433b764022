"""The worker's identities on real PostgreSQL and a real worker process: a pool router's
service token (kept as a digest in the campaign's schema, migration 0005) acting on behalf of
the labeler it names in Labelops-Labeler, and labelers signing in with an OIDC JWT."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from test_store_support import unique_name

from labelops.store.labeler_tokens import (
    read_token_digests,
    replace_service_digests,
    replace_token_digests,
    token_digest,
)
from labelops.store.migrations import migrate

pytestmark = pytest.mark.integration


def sha(token: str) -> bytes:
    return token_digest(token.encode())


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    name = unique_name("sid")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        migrate(conn, name)
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_service_digests_move_the_labelers_revision_and_are_read_with_them(
    postgres_dsn: str, schema: str
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        replace_token_digests(conn, schema, {"alice": sha("a")})
        first = read_token_digests(conn, schema, None)
        assert first is not None and first.services == {}

        assert replace_service_digests(conn, schema, {"router": sha("r1")}) is True
        second = read_token_digests(conn, schema, first.revision)
        assert second is not None and second.revision > first.revision
        assert second.by_labeler == {"alice": sha("a")}
        assert second.services == {"router": sha("r1")}

        # The same digests again change nothing and move nothing.
        assert replace_service_digests(conn, schema, {"router": sha("r1")}) is False
        assert read_token_digests(conn, schema, second.revision) is None

        assert replace_service_digests(conn, schema, {"router": sha("r2")}) is True
        rotated = read_token_digests(conn, schema, second.revision)
        assert rotated is not None and rotated.services == {"router": sha("r2")}

        assert replace_service_digests(conn, schema, {}) is True
        gone = read_token_digests(conn, schema, rotated.revision)
        assert gone is not None and gone.services == {} and gone.by_labeler == {"alice": sha("a")}


def test_a_token_is_never_both_a_labelers_and_a_services(postgres_dsn: str, schema: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        replace_token_digests(conn, schema, {"alice": sha("shared")})
        with pytest.raises(ValueError, match=r"labeler 'alice' and service 'router' share"):
            replace_service_digests(conn, schema, {"router": sha("shared")})
        replace_service_digests(conn, schema, {"router": sha("r")})
        with pytest.raises(ValueError, match=r"labeler 'bob' and service 'router' share"):
            replace_token_digests(conn, schema, {"alice": sha("shared"), "bob": sha("r")})
        with pytest.raises(ValueError, match=r"service 'router': a token digest is 32 bytes"):
            replace_service_digests(conn, schema, {"router": b"short"})
        with pytest.raises(ValueError, match="two services share a token"):
            replace_service_digests(conn, schema, {"router": sha("x"), "other": sha("x")})
        now = read_token_digests(conn, schema, None)
        assert now is not None
        assert now.by_labeler == {"alice": sha("shared")} and now.services == {"router": sha("r")}
