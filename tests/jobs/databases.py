"""The configured database engine, and real databases read row by row, for the backup tests.

CI runs the suite once per engine; tests that exercise the engine itself are parametrized with
the configured one (ENGINE), and failure cases list what can go wrong with that engine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import psycopg
from django.db import connection

ENGINE = "postgresql" if connection.vendor == "postgresql" else "sqlite"
EXTENSION = {"postgresql": ".dump", "sqlite": ".sqlite3.gz"}[ENGINE]


def raw_connect(db: Mapping[str, Any]) -> Any:
    """A DB-API connection of its own, so both sides of a comparison decode values alike."""
    if ENGINE == "sqlite":
        return sqlite3.connect(db["NAME"])
    return psycopg.connect(
        dbname=db["NAME"],
        host=db.get("HOST") or None,
        port=db.get("PORT") or None,
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        autocommit=True,
    )


def snapshot(db: Mapping[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (and, on PostgreSQL, every sequence's position)."""
    conn = raw_connect(db)
    try:
        cur = conn.cursor()
        if ENGINE == "sqlite":
            cur.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND (name NOT LIKE 'sqlite_%' OR name = 'sqlite_sequence')"
            )
        else:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = sorted(row[0] for row in cur.fetchall())
        rows = {}
        for table in tables:
            cur.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (names from the catalog)
            rows[table] = sorted(cur.fetchall(), key=repr)
        if ENGINE == "postgresql":
            cur.execute("SELECT sequencename, last_value FROM pg_sequences")
            rows["<sequences>"] = sorted(cur.fetchall(), key=repr)
        return rows
    finally:
        conn.close()
