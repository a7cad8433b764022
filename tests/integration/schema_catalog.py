"""What a campaign's schema is made of, read from the catalog (imported by the migration
tests; this module holds no tests): two schemas with equal shapes have the same tables,
columns, types, constraints, indexes, functions and privileges, whatever their names."""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg

# Each query takes the schema's name as its only parameter and returns rows in one order.
_CATALOG: dict[str, LiteralString] = {
    # Tables, indexes, sequences and row types, with their storage options and columns.
    "relations": """
        SELECT c.relname, c.relkind, c.reloptions, a.attnum, a.attname,
               format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        WHERE n.nspname = %s
        ORDER BY c.relname, a.attnum""",
    "constraints": """
        SELECT cl.relname, co.conname, pg_get_constraintdef(co.oid)
        FROM pg_constraint co
        JOIN pg_class cl ON cl.oid = co.conrelid
        JOIN pg_namespace n ON n.oid = co.connamespace
        WHERE n.nspname = %s
        ORDER BY cl.relname, co.conname""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = %s ORDER BY tablename, indexname""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid),
               pg_get_function_result(p.oid), p.prokind, p.prosecdef, p.provolatile,
               p.proparallel, p.proconfig, p.prosrc, p.proacl::text,
               pg_get_userbyid(p.proowner)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = %s
        ORDER BY p.proname, 2""",
}


def schema_shape(conn: psycopg.Connection[Any], schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every part of the schema's definition, its own name replaced by {schema}."""
    return {
        part: [
            tuple(_unnamed(value, schema) for value in row)
            for row in conn.execute(query, (schema,)).fetchall()
        ]
        for part, query in _CATALOG.items()
    }


def _unnamed(value: Any, schema: str) -> Any:
    if isinstance(value, str):
        return value.replace(schema, "{schema}")
    if isinstance(value, list):
        return [_unnamed(v, schema) for v in value]
    return value
