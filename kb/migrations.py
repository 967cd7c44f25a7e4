"""Numbered schema migrations, recorded in the ``schema_migrations`` table.

Each migration is a function of a SQLAlchemy connection; it runs once, in order, inside a
transaction. Add new ones at the end; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, text
from sqlmodel import SQLModel

import kb.models  # noqa: F401  (registers the tables on SQLModel.metadata)


def _m001_initial(conn: Connection) -> None:
    SQLModel.metadata.create_all(conn)


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _m001_initial),
]
LATEST = MIGRATIONS[-1][0]


def migrate(conn: Connection) -> int:
    """Apply every migration not yet recorded; return the schema version."""
    conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT DEFAULT CURRENT_TIMESTAMP)"
        )
    )
    done = {row[0] for row in conn.execute(text("SELECT version FROM schema_migrations"))}
    for version, name, apply in MIGRATIONS:
        if version not in done:
            apply(conn)
            conn.execute(
                text("INSERT INTO schema_migrations (version, name) VALUES (:v, :n)"),
                {"v": version, "n": name},
            )
    return LATEST
