"""The SQL source of truth (SQLite by default, any SQLAlchemy URL)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    false,
    func,
    insert,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, create_engine, delete, select

from kb.migrations import migrate
from kb.models import (
    EdgeRow,
    EmbeddingRow,
    EventRow,
    Experience,
    ExperienceRow,
    MetaRow,
    Skill,
    SkillRow,
)

_GET_META = text("SELECT value FROM meta WHERE key = :key")
_GET_METAS = text("SELECT key, value FROM meta WHERE key IN :keys").bindparams(
    bindparam("keys", expanding=True)
)
WRITE_LOCK = 0x6B620002
"""PostgreSQL advisory lock key of writers: held from a write transaction's start to its commit,
so writers on every machine serialise and change-log numbers are handed out in commit order."""
OPS = ("upsert", "tombstone", "purge")
"""What a change-log entry says happened to a record: stored (new or changed), tombstoned, or
purged for good."""

# The change log's tables as migration 5 made them (queries only; never created from here).
_log_meta = MetaData()
CHANGE_LOG = Table(
    "change_log",
    _log_meta,
    Column("namespace", String(), primary_key=True),
    Column("seq", BigInteger(), primary_key=True, autoincrement=False),
    Column("item_id", String(), nullable=False),
    Column("op", String(), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
LOG_HEADS = Table(
    "log_heads",
    _log_meta,
    Column("namespace", String(), primary_key=True),
    Column("seq", BigInteger(), nullable=False),
)


def make_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL, a generous busy timeout and foreign-key checks."""
    is_sqlite = url.startswith("sqlite")
    engine = create_engine(
        url, connect_args={"timeout": 60, "check_same_thread": False} if is_sqlite else {}
    )
    if is_sqlite:

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

    return engine


class SQLStore:
    """Sessions, migrations, the meta table and the embedding cache over one engine."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        with self.engine.begin() as conn:
            self.schema_version = migrate(conn)

    @classmethod
    def at(cls, directory: Path) -> SQLStore:
        return cls(f"sqlite:///{directory / 'kb.sqlite'}")

    @property
    def shared(self) -> bool:
        """Whether the database is a server other machines may write to (PostgreSQL), so writers
        must coordinate through it rather than through a lock file."""
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self, *, lock: bool = False) -> Iterator[Session]:
        """A session that commits on success and rolls back on error. With ``lock`` (a write
        transaction) it first takes the database's writer lock (PostgreSQL; SQLite's writers
        hold the store's lock file). Records changed through it get change-log entries, numbered
        just before the commit (under the writer lock)."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                if lock:
                    self.lock_writers(session)
                yield session
                self._append_log(session)
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def lock_writers(self, session: Session) -> None:
        """Take the writer lock for the rest of the session's transaction (PostgreSQL: a
        transaction-scoped advisory lock, released by the commit or rollback)."""
        if self.shared and not session.info.get("kb_locked"):
            session.connection().execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK}
            )
            session.info["kb_locked"] = True

    # -- the change log -------------------------------------------------------------------------
    @staticmethod
    def log_change(session: Session, namespace: str, item_id: str, op: str) -> None:
        """Note that a record changed in this transaction (its entry is written at commit)."""
        if op not in OPS:
            raise ValueError(f"unknown change {op!r}")
        session.info.setdefault("kb_changes", {})[(namespace, item_id)] = op

    def _append_log(self, session: Session) -> None:
        changes: dict[tuple[str, str], str] = session.info.pop("kb_changes", {})
        if not changes:
            return
        self.lock_writers(session)
        by_ns: dict[str, list[tuple[str, str]]] = {}
        for (namespace, item_id), op in changes.items():
            by_ns.setdefault(namespace, []).append((item_id, op))
        conn = session.connection()
        heads = {
            ns: int(seq)
            for ns, seq in conn.execute(
                LOG_HEADS.select().where(LOG_HEADS.c.namespace.in_(sorted(by_ns)))
            ).all()
        }
        now = datetime.now(UTC)
        assigned: dict[str, tuple[int, int]] = {}
        for namespace, entries in sorted(by_ns.items()):
            head = int(heads.get(namespace, 0))
            conn.execute(
                insert(CHANGE_LOG),
                [
                    {
                        "namespace": namespace,
                        "seq": head + n,
                        "item_id": item_id,
                        "op": op,
                        "created_at": now,
                    }
                    for n, (item_id, op) in enumerate(entries, start=1)
                ],
            )
            last = head + len(entries)
            if namespace in heads:
                conn.execute(
                    update(LOG_HEADS).where(LOG_HEADS.c.namespace == namespace).values(seq=last)
                )
            else:
                conn.execute(insert(LOG_HEADS).values(namespace=namespace, seq=last))
            assigned[namespace] = (head + 1, last)
        session.info["kb_log"] = assigned

    def log_heads(self) -> dict[str, int]:
        """The last change-log number of each namespace."""
        with self.engine.connect() as conn:
            return {ns: int(seq) for ns, seq in conn.execute(LOG_HEADS.select()).all()}

    def changes(self, namespace: str, *, after: int, limit: int) -> list[tuple[int, str, str]]:
        """``(seq, item_id, op)`` entries of a namespace's log after ``after``, in order."""
        stmt = (
            CHANGE_LOG.select()
            .with_only_columns(CHANGE_LOG.c.seq, CHANGE_LOG.c.item_id, CHANGE_LOG.c.op)
            .where(CHANGE_LOG.c.namespace == namespace, CHANGE_LOG.c.seq > after)
            .order_by(CHANGE_LOG.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(int(seq), item_id, op) for seq, item_id, op in conn.execute(stmt).all()]

    def change_time(self, namespace: str, seq: int) -> datetime | None:
        """When entry ``seq`` of a namespace's log was committed."""
        stmt = (
            CHANGE_LOG.select()
            .with_only_columns(CHANGE_LOG.c.created_at)
            .where(CHANGE_LOG.c.namespace == namespace, CHANGE_LOG.c.seq == seq)
        )
        with self.engine.connect() as conn:
            stamp = conn.execute(stmt).scalar()
        if isinstance(stamp, datetime) and stamp.tzinfo is None:  # SQLite keeps no zone
            stamp = stamp.replace(tzinfo=UTC)
        return stamp

    # -- meta ---------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        # A Core query, not an ORM session: searches read the meta table several times each.
        with self.engine.connect() as conn:
            return conn.execute(_GET_META, {"key": key}).scalar()

    def get_metas(self, keys: Sequence[str]) -> dict[str, str]:
        """The values of those ``keys`` that are set, in one query."""
        with self.engine.connect() as conn:
            return {
                str(row[0]): str(row[1]) for row in conn.execute(_GET_METAS, {"keys": list(keys)})
            }

    def set_meta(self, values: dict[str, str], session: Session | None = None) -> None:
        if session is None:
            with self.session() as own:
                self.set_meta(values, own)
            return
        for key, value in values.items():
            row = session.get(MetaRow, key)
            if row is None:
                session.add(MetaRow(key=key, value=value))
            else:
                row.value = value
                session.add(row)

    # -- embedding cache ----------------------------------------------------------------------
    def cache_get(self, keys: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        with Session(self.engine) as session:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows = session.exec(select(EmbeddingRow).where(EmbeddingRow.key.in_(chunk)))  # type: ignore[attr-defined]
                out.update({row.key: row.vector for row in rows})
        return out

    def cache_put(self, items: dict[str, bytes], session: Session | None = None) -> None:
        if session is None:
            with self.session() as own:
                self.cache_put(items, own)
            return
        if not items:
            return
        dialects = {"postgresql": postgresql, "sqlite": sqlite}
        dialect = dialects.get(self.engine.dialect.name)
        if dialect is None:
            existing = set(self.cache_get(list(items)))
            session.add_all(
                EmbeddingRow(key=k, vector=v) for k, v in items.items() if k not in existing
            )
            return
        # insert-or-ignore: another server may cache the same text at the same moment
        table = EmbeddingRow.__table__  # type: ignore[attr-defined]
        for chunk in chunked(list(items.items()), 500):
            rows = [{"key": k, "vector": v} for k, v in chunk]
            session.connection().execute(
                dialect.insert(table).values(rows).on_conflict_do_nothing()
            )

    # -- generic helpers ----------------------------------------------------------------------
    def count(self, model: type[SQLModel], *where: Any) -> int:
        with Session(self.engine) as session:
            stmt = select(func.count()).select_from(model)
            for clause in where:
                stmt = stmt.where(clause)
            return int(session.exec(stmt).one())

    def delete_where(self, session: Session, model: type[SQLModel], *where: Any) -> None:
        stmt = delete(model)
        for clause in where:
            stmt = stmt.where(clause)
        session.exec(stmt)  # type: ignore[call-overload]

    # -- index bookkeeping (every namespace) ---------------------------------------------------
    def mark_indexed(self, keys: Sequence[tuple[str, str]]) -> None:
        """Mark ``(namespace, id)`` records as held by the index."""
        by_ns: dict[str, list[str]] = {}
        for namespace, item_id in keys:
            by_ns.setdefault(namespace, []).append(item_id)
        with self.session() as session:
            for namespace, ids in by_ns.items():
                for chunk in chunked(ids, 500):
                    for model in (ExperienceRow, SkillRow):
                        stmt = update(model).where(
                            col(model.namespace) == namespace, col(model.id).in_(chunk)
                        )
                        session.exec(stmt.values(indexed=True))  # type: ignore[call-overload]

    def mark_all_unindexed(self, session: Session) -> None:
        for model in (ExperienceRow, SkillRow):
            session.exec(update(model).values(indexed=False))  # type: ignore[call-overload]

    def unindexed(self) -> list[Experience | Skill]:
        """Records of every namespace that the index does not hold yet (crash repair)."""
        with Session(self.engine) as session:
            exps = session.exec(
                select(ExperienceRow).where(
                    ExperienceRow.indexed == false(), col(ExperienceRow.deleted_at).is_(None)
                )
            ).all()
            skills = session.exec(select(SkillRow).where(SkillRow.indexed == false())).all()
            return [Experience.model_validate(r.data) for r in exps] + [
                Skill.model_validate(r.data) for r in skills
            ]

    def iter_all_records(self, batch: int) -> Iterator[list[Experience | Skill]]:
        """Every record of every namespace, in batches (for reindex)."""
        for model, parse in ((ExperienceRow, Experience), (SkillRow, Skill)):
            last = ""
            while True:
                with Session(self.engine) as session:
                    stmt = select(model).where(model.id > last)  # type: ignore[attr-defined]
                    if model is ExperienceRow:
                        stmt = stmt.where(col(ExperienceRow.deleted_at).is_(None))
                    rows = session.exec(stmt.order_by(model.id).limit(batch)).all()  # type: ignore[attr-defined]
                if not rows:
                    break
                yield [parse.model_validate(r.data) for r in rows]  # type: ignore[attr-defined]
                last = rows[-1].id  # type: ignore[attr-defined]

    def all_ids(self) -> set[str]:
        """The ids of every live record of every namespace (tombstones excluded)."""
        with Session(self.engine) as session:
            out: set[str] = set(
                session.exec(
                    select(ExperienceRow.id).where(col(ExperienceRow.deleted_at).is_(None))
                ).all()
            )
            out.update(session.exec(select(SkillRow.id)).all())
            return out

    def namespace_crossings(self) -> list[str]:
        """What breaks the namespace boundary: an id stored in two namespaces, an edge or an
        event pointing at a record of another namespace (``kb doctor``)."""
        problems = []
        with Session(self.engine) as session:
            for model in (ExperienceRow, SkillRow):
                rows = session.exec(
                    select(model.id)  # type: ignore[attr-defined]
                    .group_by(model.id)  # type: ignore[attr-defined]
                    .having(func.count() > 1)
                ).all()
                problems += [f"{item_id} is stored in several namespaces" for item_id in rows]
            owner: dict[str, str] = {}
            for model in (ExperienceRow, SkillRow):
                owner.update(
                    dict(session.exec(select(model.id, model.namespace)).all())  # type: ignore[attr-defined]
                )
            for edge in session.exec(select(EdgeRow)).all():
                for end in (edge.src, edge.dst):
                    if owner.get(end, edge.namespace) != edge.namespace:
                        problems.append(f"edge {edge.src}->{edge.dst} of {edge.namespace} crosses")
            for event in session.exec(select(EventRow)).all():
                if owner.get(event.item_id, event.namespace) != event.namespace:
                    problems.append(f"event on {event.item_id} of {event.namespace} crosses")
        return problems

    def vacuum(self) -> None:
        """Rewrite the database file so deleted rows leave no trace in free pages (SQLite)."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM")

    def dispose(self) -> None:
        self.engine.dispose()


def chunked(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
