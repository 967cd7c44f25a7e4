"""Numbered schema migrations, recorded in the ``schema_migrations`` table.

Each migration is a function of a SQLAlchemy connection; it runs once, in order, inside a
transaction. Add new ones at the end; never edit one that has shipped. A migration spells out its
own tables (SQLAlchemy Core, dialect-neutral) instead of deriving them from ``kb.models``, so a
later change to a model can never change what an old migration does.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    text,
)

from kb.errors import Conflict


def _v1_schema() -> MetaData:
    """The schema as release 0.1.0 shipped it (frozen)."""
    v1 = MetaData()
    stamp = DateTime(timezone=True)
    Table(
        "experiences",
        v1,
        Column("id", String(), primary_key=True),
        Column("namespace", String(), nullable=False, index=True),
        Column("task", String(), nullable=False),
        Column("domain", String(), index=True),
        Column("outcome", String(), nullable=False),
        Column("source_id", String(), index=True),
        Column("data", JSON(), nullable=False),
        Column("created_at", stamp, nullable=False, index=True),
        Column("updated_at", stamp, nullable=False),
        Column("indexed", Boolean(), nullable=False, index=True),
        Index("ix_exp_ns_outcome", "namespace", "outcome"),
    )
    Table(
        "skills",
        v1,
        Column("id", String(), primary_key=True),
        Column("namespace", String(), nullable=False, index=True),
        Column("name", String(), nullable=False),
        Column("version", Integer(), nullable=False),
        Column("status", String(), nullable=False),
        Column("latest", Boolean(), nullable=False, index=True),
        Column("data", JSON(), nullable=False),
        Column("created_at", stamp, nullable=False),
        Column("updated_at", stamp, nullable=False),
        Column("indexed", Boolean(), nullable=False, index=True),
        Index("ix_skill_ns_name_version", "namespace", "name", "version", unique=True),
    )
    Table(
        "edges",
        v1,
        Column("id", Integer(), primary_key=True, autoincrement=True),
        Column("namespace", String(), nullable=False, index=True),
        Column("src", String(), nullable=False, index=True),
        Column("dst", String(), nullable=False, index=True),
        Column("kind", String(), nullable=False),
        Column("weight", Float(), nullable=False),
        Column("created_at", stamp, nullable=False),
        Index("ix_edge_unique", "namespace", "src", "dst", "kind", unique=True),
    )
    Table(
        "events",
        v1,
        Column("id", Integer(), primary_key=True, autoincrement=True),
        Column("namespace", String(), nullable=False, index=True),
        Column("item_id", String(), nullable=False, index=True),
        Column("kind", String(), nullable=False),
        Column("success", Boolean()),
        Column("detail", JSON(), nullable=False),
        Column("created_at", stamp, nullable=False),
    )
    Table(
        "validation_runs",
        v1,
        Column("id", Integer(), primary_key=True, autoincrement=True),
        Column("namespace", String(), nullable=False, index=True),
        Column("skill_id", String(), nullable=False, index=True),
        Column("test_name", String(), nullable=False),
        Column("passed", Boolean(), nullable=False),
        Column("duration", Float(), nullable=False),
        Column("data", JSON(), nullable=False),
        Column("created_at", stamp, nullable=False),
    )
    Table(
        "embedding_cache",
        v1,
        Column("key", String(), primary_key=True),
        Column("vector", LargeBinary(), nullable=False),
    )
    Table(
        "tokens",
        v1,
        Column("id", String(), primary_key=True),
        Column("namespace", String(), nullable=False),
        Column("name", String(), nullable=False),
        Column("hash", String(), nullable=False, index=True, unique=True),
        Column("created_at", stamp, nullable=False),
        Column("revoked", Boolean(), nullable=False),
    )
    Table(
        "meta",
        v1,
        Column("key", String(), primary_key=True),
        Column("value", String(), nullable=False),
    )
    return v1


def _m001_initial(conn: Connection) -> None:
    _v1_schema().create_all(conn)


def _m002_namespaced_identity(conn: Connection) -> None:
    """A record's identity becomes (namespace, id); experiences gain a source key (unique per
    namespace: idempotent imports), a version number, a tombstone and a table of earlier
    versions."""
    v2 = MetaData()
    stamp = DateTime(timezone=True)
    experiences = Table(
        "experiences",
        v2,
        Column("namespace", String(), primary_key=True),
        Column("id", String(), primary_key=True),
        Column("task", String(), nullable=False),
        Column("domain", String(), index=True),
        Column("outcome", String(), nullable=False),
        Column("source_id", String(), index=True),
        Column("source_key", String()),
        Column("version", Integer(), nullable=False),
        Column("deleted_at", stamp, index=True),
        Column("data", JSON(), nullable=False),
        Column("created_at", stamp, nullable=False, index=True),
        Column("updated_at", stamp, nullable=False),
        Column("indexed", Boolean(), nullable=False, index=True),
        Index("ix_exp_ns_outcome", "namespace", "outcome"),
        Index("ix_exp_ns_source_key", "namespace", "source_key", unique=True),
    )
    skills = Table(
        "skills",
        v2,
        Column("namespace", String(), primary_key=True),
        Column("id", String(), primary_key=True),
        Column("name", String(), nullable=False),
        Column("version", Integer(), nullable=False),
        Column("status", String(), nullable=False),
        Column("latest", Boolean(), nullable=False, index=True),
        Column("data", JSON(), nullable=False),
        Column("created_at", stamp, nullable=False),
        Column("updated_at", stamp, nullable=False),
        Column("indexed", Boolean(), nullable=False, index=True),
        Index("ix_skill_ns_name_version", "namespace", "name", "version", unique=True),
    )
    Table(
        "experience_versions",
        v2,
        Column("namespace", String(), primary_key=True),
        Column("id", String(), primary_key=True),
        Column("version", Integer(), primary_key=True),
        Column("data", JSON(), nullable=False),
        Column("created_at", stamp, nullable=False),
    )
    old_indexes = {
        "experiences": [
            "ix_experiences_namespace",
            "ix_experiences_indexed",
            "ix_exp_ns_outcome",
            "ix_experiences_created_at",
            "ix_experiences_domain",
            "ix_experiences_source_id",
        ],
        "skills": [
            "ix_skills_namespace",
            "ix_skills_latest",
            "ix_skills_indexed",
            "ix_skill_ns_name_version",
        ],
    }
    for table, names in old_indexes.items():
        for name in names:
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
        conn.execute(text(f"ALTER TABLE {table} RENAME TO {table}_v1"))
    v2.create_all(conn)
    common = (
        "id, namespace, task, domain, outcome, source_id, data, created_at, updated_at, indexed"
    )
    conn.execute(
        text(f"INSERT INTO experiences ({common}, version) SELECT {common}, 1 FROM experiences_v1")
    )
    columns = "id, namespace, name, version, status, latest, data, created_at, updated_at, indexed"
    conn.execute(text(f"INSERT INTO skills ({columns}) SELECT {columns} FROM skills_v1"))
    for old in (experiences, skills):
        conn.execute(text(f"DROP TABLE {old.name}_v1"))


def _m003_skill_files(conn: Connection) -> None:
    """The files of a skill package, per skill version, byte for byte with their modes."""
    v3 = MetaData()
    Table(
        "skill_files",
        v3,
        Column("namespace", String(), primary_key=True),
        Column("skill_id", String(), primary_key=True),
        Column("path", String(), primary_key=True),
        Column("data", LargeBinary(), nullable=False),
        Column("mode", Integer(), nullable=False),
        Column("sha256", String(), nullable=False),
    )
    v3.create_all(conn)


def _m004_gate_sessions(conn: Connection) -> None:
    """The pre-execution gate: sessions (one per agent run, expiring), their decisions, and a
    policy per namespace."""
    v4 = MetaData()
    stamp = DateTime(timezone=True)
    Table(
        "gate_sessions",
        v4,
        Column("namespace", String(), primary_key=True),
        Column("run_id", String(), primary_key=True),
        Column("role", String()),
        Column("task", String()),
        Column("seq", Integer(), nullable=False),
        Column("state", JSON(), nullable=False),
        Column("corpus", String(), nullable=False),
        Column("created_at", stamp, nullable=False),
        Column("updated_at", stamp, nullable=False),
        Column("expires_at", stamp, nullable=False, index=True),
    )
    Table(
        "gate_decisions",
        v4,
        Column("id", Integer(), primary_key=True, autoincrement=True),
        Column("namespace", String(), nullable=False),
        Column("run_id", String(), nullable=False),
        Column("seq", Integer(), nullable=False),
        Column("tool", String(), nullable=False),
        Column("decision", String(), nullable=False),
        Column("risk", Float(), nullable=False),
        Column("session_risk", Float(), nullable=False),
        Column("data", JSON(), nullable=False),
        Column("created_at", stamp, nullable=False),
        Index("ix_gate_decision_run", "namespace", "run_id", "seq"),
    )
    Table(
        "gate_policies",
        v4,
        Column("namespace", String(), primary_key=True),
        Column("data", JSON(), nullable=False),
        Column("updated_at", stamp, nullable=False),
    )
    v4.create_all(conn)


def _m005_change_log(conn: Connection) -> None:
    """The ordered change log the derived indexes follow: one row per changed record, numbered
    per namespace under the write lock (so a follower never skips a committed change), and the
    head of each namespace's log."""
    v5 = MetaData()
    Table(
        "change_log",
        v5,
        Column("namespace", String(), primary_key=True),
        Column("seq", BigInteger(), primary_key=True, autoincrement=False),
        Column("item_id", String(), nullable=False),
        Column("op", String(), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "log_heads",
        v5,
        Column("namespace", String(), primary_key=True),
        Column("seq", BigInteger(), nullable=False),
    )
    v5.create_all(conn)


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _m001_initial),
    (2, "identity (namespace, id); source keys, versions, tombstones", _m002_namespaced_identity),
    (3, "skill package files", _m003_skill_files),
    (4, "gate sessions, decisions and policies", _m004_gate_sessions),
    (5, "change log of records, followed by each server's index", _m005_change_log),
]
LATEST = MIGRATIONS[-1][0]


MIGRATION_LOCK = 0x6B620001
"""PostgreSQL advisory lock key of migrations: servers starting together migrate one at a time."""


class SchemaTooNew(Conflict):
    """The database was migrated by a newer release than this one."""


def migrate(conn: Connection) -> int:
    """Apply every migration not yet recorded; return the schema version. Refuses (raises
    :class:`SchemaTooNew`) a database whose schema is newer than this code knows."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT DEFAULT CURRENT_TIMESTAMP)"
        )
    )
    done = {row[0] for row in conn.execute(text("SELECT version FROM schema_migrations"))}
    if done and max(done) > LATEST:
        raise SchemaTooNew(
            f"the database's schema is version {max(done)}, newer than this release of kb knows "
            f"({LATEST}); upgrade kb on this machine (`pip install -U agent-kb`) before using it"
        )
    for version, name, apply in MIGRATIONS:
        if version not in done:
            apply(conn)
            conn.execute(
                text("INSERT INTO schema_migrations (version, name) VALUES (:v, :n)"),
                {"v": version, "n": name},
            )
    return LATEST
