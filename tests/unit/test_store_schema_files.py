"""The rule of labelops.store.migrations, checked on the files before any database is asked:
functions only in functions/<name>.sql (one each, CREATE OR REPLACE), tables and types only
in numbered migrations."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelops.store.migrations import available_functions, available_migrations

FUNCTION = "CREATE OR REPLACE FUNCTION {name}() RETURNS int LANGUAGE sql AS 'SELECT 1';\n"


def folder_with(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_the_shipped_files_follow_the_rule() -> None:
    assert available_migrations()[0].label == "0001_initial"
    names = [f.name for f in available_functions()]
    assert names == sorted(names)
    assert {"claim_task", "claim_tasks", "accept_label", "accept_labels"} <= set(names)


def test_function_files_apply_in_name_order(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path,
        {"b.sql": FUNCTION.format(name="b"), "a.sql": FUNCTION.format(name="a"), "x.md": "doc"},
    )
    assert [f.name for f in available_functions(folder)] == ["a", "b"]


def test_a_migration_that_creates_a_function_is_refused(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path,
        {
            "0001_initial.sql": "-- CREATE FUNCTION in a comment is fine\nCREATE TABLE t (i int);",
            "0002_later.sql": "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
        },
    )
    with pytest.raises(RuntimeError, match=r"migrations/0002_later.sql creates the function f"):
        available_migrations(folder)


@pytest.mark.parametrize(
    ("file_name", "text", "refusal"),
    [
        ("f.sql", FUNCTION.format(name="g"), r"defines the functions \['g'\].*named 'f'"),
        ("f.sql", FUNCTION.format(name="f") + FUNCTION.format(name="g"), r"\['f', 'g'\]"),
        ("f.sql", "-- nothing\n", r"defines the functions \[\]"),
        ("f.sql", FUNCTION.format(name="f").replace(" OR REPLACE", ""), "CREATE OR REPLACE"),
        ("F-1.sql", FUNCTION.format(name="f"), "named <function>.sql"),
        ("f.sql", FUNCTION.format(name="f") + "CREATE TABLE t (i int);", "'CREATE TABLE'"),
        ("f.sql", FUNCTION.format(name="f") + "ALTER  TYPE r ADD ATTRIBUTE x int;", "'ALTER TYPE'"),
    ],
)
def test_a_function_file_off_the_rule_is_refused(
    tmp_path: Path, file_name: str, text: str, refusal: str
) -> None:
    with pytest.raises(RuntimeError, match=refusal):
        available_functions(folder_with(tmp_path, {file_name: text}))
