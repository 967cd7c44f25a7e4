"""Record queries over SQL, scoped to one namespace."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, cast, false, func, or_, true, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Session, col, select

from kb.models import (
    Edge,
    EdgeRow,
    EventRow,
    Experience,
    ExperienceRow,
    ExperienceVersionRow,
    Skill,
    SkillFileRow,
    SkillRow,
    Stats,
    ValidationRunRow,
    kind_of,
)
from kb.stores.sql import SQLStore, chunked


def _experience_row(exp: Experience) -> ExperienceRow:
    return ExperienceRow(
        id=exp.id,
        namespace=exp.namespace,
        task=exp.task[:2000],
        domain=exp.domain,
        outcome=exp.outcome.value,
        source_id=exp.provenance.source_id,
        source_key=exp.provenance.source_key,
        version=exp.version,
        deleted_at=exp.deleted_at,
        data=exp.model_dump(mode="json"),
        created_at=exp.provenance.created_at,
        updated_at=exp.updated_at,
        indexed=False,
    )


def _skill_row(skill: Skill) -> SkillRow:
    return SkillRow(
        id=skill.id,
        namespace=skill.namespace,
        name=skill.name,
        version=skill.version,
        status=skill.status.value,
        latest=skill.latest,
        data=skill.model_dump(mode="json"),
        created_at=skill.created_at,
        updated_at=skill.updated_at,
        indexed=False,
    )


class Records:
    """Reads and writes of experiences, skills, edges and events of one namespace."""

    def __init__(self, sql: SQLStore, namespace: str):
        self.sql = sql
        self.ns = namespace

    def _session(self) -> Session:
        return Session(self.sql.engine)

    # -- writes (inside the caller's transaction) ---------------------------------------------
    def put(
        self, session: Session, items: Sequence[Experience | Skill], *, indexed: bool = False
    ) -> None:
        """Insert or replace records of this namespace, marked unindexed unless ``indexed``
        (a tombstone needs no index row)."""
        for item in items:
            if item.namespace != self.ns:
                raise ValueError(f"{item.id} belongs to {item.namespace!r}, not {self.ns!r}")
            row: ExperienceRow | SkillRow = (
                _experience_row(item) if isinstance(item, Experience) else _skill_row(item)
            )
            row.indexed = indexed
            session.merge(row)
            tombstone = isinstance(item, Experience) and item.deleted_at is not None
            self.sql.log_change(session, self.ns, item.id, "tombstone" if tombstone else "upsert")

    def purge(self, session: Session, ids: Sequence[str]) -> None:
        """Remove records for good: their rows, earlier versions, edges and events."""
        for item_id in ids:
            self.sql.log_change(session, self.ns, item_id, "purge")
        for chunk in chunked(list(ids), 500):
            self.sql.delete_where(
                session,
                ExperienceVersionRow,
                ExperienceVersionRow.namespace == self.ns,
                col(ExperienceVersionRow.id).in_(chunk),
            )
            for model in (ExperienceRow, SkillRow):
                self.sql.delete_where(
                    session, model, col(model.id).in_(chunk), model.namespace == self.ns
                )
            self.sql.delete_where(
                session,
                EdgeRow,
                EdgeRow.namespace == self.ns,
                or_(col(EdgeRow.src).in_(chunk), col(EdgeRow.dst).in_(chunk)),
            )
            self.sql.delete_where(
                session, EventRow, EventRow.namespace == self.ns, col(EventRow.item_id).in_(chunk)
            )

    def put_edges(self, session: Session, edges: Sequence[Edge]) -> None:
        for edge in edges:
            existing = session.exec(
                select(EdgeRow).where(
                    EdgeRow.namespace == self.ns,
                    EdgeRow.src == edge.src,
                    EdgeRow.dst == edge.dst,
                    EdgeRow.kind == edge.kind,
                )
            ).first()
            if existing is None:
                session.add(
                    EdgeRow(
                        namespace=self.ns,
                        src=edge.src,
                        dst=edge.dst,
                        kind=edge.kind,
                        weight=edge.weight,
                    )
                )
            else:
                existing.weight = edge.weight
                session.add(existing)

    def record_use(
        self, session: Session, item_id: str, *, success: bool, note: str | None = None
    ) -> dict[str, Any] | None:
        """Count a use of an item; returns its counts, or None when it does not exist."""
        row: ExperienceRow | SkillRow | None = (
            session.get(ExperienceRow, (self.ns, item_id))
            if kind_of(item_id) == "experience"
            else session.get(SkillRow, (self.ns, item_id))
        )
        if row is None or (isinstance(row, ExperienceRow) and row.deleted_at is not None):
            return None
        data = dict(row.data)
        data["uses"] = int(data.get("uses", 0)) + 1
        key = "successes" if success else "failures"
        data[key] = int(data.get(key, 0)) + 1
        row.data = data
        session.add(row)
        session.add(
            EventRow(
                namespace=self.ns,
                item_id=item_id,
                kind="feedback",
                success=success,
                detail={"note": note} if note else {},
            )
        )
        uses, successes = data["uses"], int(data.get("successes", 0))
        return {
            "id": item_id,
            "uses": uses,
            "successes": successes,
            "success_rate": round(successes / uses, 4),
        }

    # -- reads ---------------------------------------------------------------------------------
    def get_experiences(
        self, ids: Sequence[str], *, deleted: bool = False, steps: bool = True
    ) -> dict[str, Experience]:
        """Experiences by id; tombstoned ones only with ``deleted``; without ``steps``, each with
        an empty step list (the database leaves them out: what search shows never needs them)."""
        out: dict[str, Experience] = {}
        data = ExperienceRow.data if steps else self._data_without_steps()
        with self._session() as session:
            for chunk in chunked(list(ids), 500):
                stmt = select(ExperienceRow.id, data).where(
                    ExperienceRow.namespace == self.ns, col(ExperienceRow.id).in_(chunk)
                )
                if not deleted:
                    stmt = stmt.where(col(ExperienceRow.deleted_at).is_(None))
                out.update({i: Experience.model_validate(d) for i, d in session.exec(stmt)})
        return out

    def _data_without_steps(self) -> Any:
        """The stored document without its ``steps`` (a JSON expression of the database)."""
        if self.sql.engine.dialect.name == "postgresql":
            return type_coerce(cast(ExperienceRow.data, JSONB).op("-")("steps"), JSON)
        return type_coerce(func.json_remove(ExperienceRow.data, "$.steps"), JSON)

    def get_skills(self, ids: Sequence[str]) -> dict[str, Skill]:
        out: dict[str, Skill] = {}
        with self._session() as session:
            for chunk in chunked(list(ids), 500):
                rows = session.exec(
                    select(SkillRow).where(
                        SkillRow.namespace == self.ns, col(SkillRow.id).in_(chunk)
                    )
                )
                out.update({r.id: Skill.model_validate(r.data) for r in rows})
        return out

    def get_any(self, ids: Sequence[str], *, steps: bool = True) -> dict[str, Experience | Skill]:
        exp_ids = [i for i in ids if kind_of(i) == "experience"]
        skill_ids = [i for i in ids if kind_of(i) == "skill"]
        found: dict[str, Experience | Skill] = {}
        found.update(self.get_experiences(exp_ids, steps=steps))
        found.update(self.get_skills(skill_ids))
        return found

    def exists(self, item_id: str) -> bool:
        return bool(self.get_any([item_id]))

    def list_experiences(
        self, *, outcome: str | None, domain: str | None, tag: str | None, limit: int, offset: int
    ) -> list[Experience]:
        with self._session() as session:
            stmt = select(ExperienceRow).where(
                ExperienceRow.namespace == self.ns, col(ExperienceRow.deleted_at).is_(None)
            )
            if outcome:
                stmt = stmt.where(ExperienceRow.outcome == outcome)
            if domain:
                stmt = stmt.where(ExperienceRow.domain == domain)
            stmt = stmt.order_by(col(ExperienceRow.created_at).desc(), col(ExperienceRow.id).desc())
            if tag is None:
                rows = session.exec(stmt.offset(offset).limit(limit)).all()
                return [Experience.model_validate(r.data) for r in rows]
            found: list[Experience] = []
            for row in session.exec(stmt):
                if tag in row.data.get("tags", []):
                    found.append(Experience.model_validate(row.data))
            return found[offset : offset + limit]

    def iter_experiences(
        self, *, outcome: str | None = None, deleted: bool = False, batch: int = 500
    ) -> Iterator[Experience]:
        """Every experience of the namespace (tombstoned ones too with ``deleted``), by id,
        read in batches."""
        last = ""
        while True:
            with self._session() as session:
                stmt = select(ExperienceRow).where(
                    ExperienceRow.namespace == self.ns, ExperienceRow.id > last
                )
                if not deleted:
                    stmt = stmt.where(col(ExperienceRow.deleted_at).is_(None))
                if outcome:
                    stmt = stmt.where(ExperienceRow.outcome == outcome)
                rows = session.exec(stmt.order_by(col(ExperienceRow.id)).limit(batch)).all()
            if not rows:
                return
            yield from (Experience.model_validate(r.data) for r in rows)
            last = rows[-1].id

    def by_source_id(self, source_id: str) -> list[Experience]:
        """Experiences imported from the same source record (e.g. a benchmark task id)."""
        with self._session() as session:
            rows = session.exec(
                select(ExperienceRow).where(
                    ExperienceRow.namespace == self.ns,
                    ExperienceRow.source_id == str(source_id),
                    col(ExperienceRow.deleted_at).is_(None),
                )
            ).all()
            return [Experience.model_validate(r.data) for r in rows]

    def skill_versions(self, name: str) -> list[Skill]:
        with self._session() as session:
            rows = session.exec(
                select(SkillRow)
                .where(SkillRow.namespace == self.ns, SkillRow.name == name)
                .order_by(col(SkillRow.version))
            ).all()
            return [Skill.model_validate(r.data) for r in rows]

    def list_skills(self, *, status: str | None, all_versions: bool, limit: int) -> list[Skill]:
        with self._session() as session:
            stmt = select(SkillRow).where(SkillRow.namespace == self.ns)
            if not all_versions:
                stmt = stmt.where(SkillRow.latest == true())
            if status:
                stmt = stmt.where(SkillRow.status == status)
            rows = session.exec(
                stmt.order_by(col(SkillRow.name), col(SkillRow.version)).limit(limit)
            ).all()
            return [Skill.model_validate(r.data) for r in rows]

    def edges(self, *, deleted: bool = False) -> list[Edge]:
        """The namespace's edges; those touching a tombstoned record only with ``deleted``."""
        hidden = set() if deleted else set(self.tombstoned())
        with self._session() as session:
            rows = session.exec(select(EdgeRow).where(EdgeRow.namespace == self.ns)).all()
            return [
                Edge(src=r.src, dst=r.dst, kind=r.kind, weight=r.weight)
                for r in rows
                if r.src not in hidden and r.dst not in hidden
            ]

    def events(self) -> list[EventRow]:
        with self._session() as session:
            return list(session.exec(select(EventRow).where(EventRow.namespace == self.ns)).all())

    def validation_runs(self, skill_id: str | None = None) -> list[ValidationRunRow]:
        with self._session() as session:
            stmt = select(ValidationRunRow).where(ValidationRunRow.namespace == self.ns)
            if skill_id:
                stmt = stmt.where(ValidationRunRow.skill_id == skill_id)
            return list(session.exec(stmt.order_by(col(ValidationRunRow.id))).all())

    def ids(self) -> set[str]:
        """The ids of every record of the namespace."""
        with self._session() as session:
            out: set[str] = set()
            for model in (ExperienceRow, SkillRow):
                stmt = select(model.id).where(model.namespace == self.ns)  # type: ignore[attr-defined]
                out.update(session.exec(stmt).all())
            return out

    def live_experience_ids(self) -> set[str]:
        """Ids of this namespace's experiences that are not tombstoned."""
        with self._session() as session:
            return set(
                session.exec(
                    select(ExperienceRow.id).where(
                        ExperienceRow.namespace == self.ns,
                        col(ExperienceRow.deleted_at).is_(None),
                    )
                ).all()
            )

    def put_files(self, session: Session, skill_id: str, files: Sequence[dict[str, Any]]) -> None:
        """Store the package files of a skill version (``path``, ``data``, ``mode``)."""
        for f in files:
            session.merge(
                SkillFileRow(
                    namespace=self.ns,
                    skill_id=skill_id,
                    path=f["path"],
                    data=f["data"],
                    mode=int(f["mode"]),
                    sha256=hashlib.sha256(f["data"]).hexdigest(),
                )
            )

    def files(self, skill_id: str) -> list[dict[str, Any]]:
        """The package files of a skill version, by path."""
        with self._session() as session:
            rows = session.exec(
                select(SkillFileRow)
                .where(SkillFileRow.namespace == self.ns, SkillFileRow.skill_id == skill_id)
                .order_by(col(SkillFileRow.path))
            ).all()
            return [
                {"path": r.path, "data": r.data, "mode": r.mode, "sha256": r.sha256} for r in rows
            ]

    def count_experiences(self) -> int:
        return self.sql.count(
            ExperienceRow,
            ExperienceRow.namespace == self.ns,
            col(ExperienceRow.deleted_at).is_(None),
        )

    # -- identity, history, tombstones ---------------------------------------------------------
    def by_source_key(self, keys: Sequence[str]) -> dict[str, str]:
        """``source key -> id`` for the keys stored in this namespace (tombstoned included)."""
        out: dict[str, str] = {}
        with self._session() as session:
            for chunk in chunked(list(keys), 500):
                rows = session.exec(
                    select(ExperienceRow.source_key, ExperienceRow.id).where(
                        ExperienceRow.namespace == self.ns,
                        col(ExperienceRow.source_key).in_(chunk),
                    )
                ).all()
                out.update({str(key): item_id for key, item_id in rows})
        return out

    def keep_version(self, session: Session, exp: Experience) -> None:
        """Keep ``exp`` (the content about to be replaced) as an earlier version."""
        session.add(
            ExperienceVersionRow(
                namespace=self.ns,
                id=exp.id,
                version=exp.version,
                data=exp.model_dump(mode="json"),
                created_at=exp.updated_at,
            )
        )

    def versions(self, experience_id: str) -> list[Experience]:
        """Earlier versions of an experience, oldest first."""
        with self._session() as session:
            rows = session.exec(
                select(ExperienceVersionRow)
                .where(
                    ExperienceVersionRow.namespace == self.ns,
                    ExperienceVersionRow.id == experience_id,
                )
                .order_by(col(ExperienceVersionRow.version))
            ).all()
            return [Experience.model_validate(r.data) for r in rows]

    def tombstoned(self) -> list[str]:
        """Ids of this namespace's tombstoned experiences."""
        with self._session() as session:
            return list(
                session.exec(
                    select(ExperienceRow.id).where(
                        ExperienceRow.namespace == self.ns,
                        col(ExperienceRow.deleted_at).is_not(None),
                    )
                ).all()
            )

    def count_events(self) -> int:
        return self.sql.count(EventRow, EventRow.namespace == self.ns)

    def add_event(
        self, session: Session, item_id: str, kind: str, detail: dict[str, Any] | None = None
    ) -> None:
        """Log an event on an item (a deprecation, a gate decision...)."""
        session.add(EventRow(namespace=self.ns, item_id=item_id, kind=kind, detail=detail or {}))

    def add_validation_runs(
        self, session: Session, skill_id: str, outcomes: Sequence[dict[str, Any]]
    ) -> None:
        """Store the outcome of each test of one validation."""
        session.add_all(
            ValidationRunRow(
                namespace=self.ns,
                skill_id=skill_id,
                test_name=o["name"],
                passed=o["passed"],
                duration=o["duration"],
                data=o,
            )
            for o in outcomes
        )

    def restore_history(self, session: Session, rows: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Add exported ``("event" | "validation", body)`` rows to this namespace (a lossless
        import): new row ids, the namespace of this handle. Returns how many were added."""
        models: dict[str, type[EventRow] | type[ValidationRunRow]] = {
            "event": EventRow,
            "validation": ValidationRunRow,
        }
        for kind, body in rows:
            data = {k: v for k, v in body.items() if k not in {"id", "namespace"}}
            if isinstance(data.get("created_at"), str):
                data["created_at"] = datetime.fromisoformat(data["created_at"])
            session.add(models[kind](**data, namespace=self.ns))
        return len(rows)

    def stats(self, path: str, *, model: str | None, dim: int | None, schema_version: int) -> Stats:
        with self._session() as session:
            by_outcome = dict(
                session.exec(
                    select(ExperienceRow.outcome, func.count())
                    .where(
                        ExperienceRow.namespace == self.ns,
                        col(ExperienceRow.deleted_at).is_(None),
                    )
                    .group_by(ExperienceRow.outcome)
                ).all()
            )
            by_status = dict(
                session.exec(
                    select(SkillRow.status, func.count())
                    .where(SkillRow.namespace == self.ns, SkillRow.latest == true())
                    .group_by(SkillRow.status)
                ).all()
            )
            pending = sum(
                int(
                    session.exec(
                        select(func.count())
                        .select_from(m)
                        .where(m.namespace == self.ns, m.indexed == false())
                    ).one()
                )  # type: ignore[attr-defined]
                for m in (ExperienceRow, SkillRow)
            )
            total = sum(by_outcome.values()) + int(
                session.exec(
                    select(func.count()).select_from(SkillRow).where(SkillRow.namespace == self.ns)
                ).one()
            )
            events = int(
                session.exec(
                    select(func.count()).select_from(EventRow).where(EventRow.namespace == self.ns)
                ).one()
            )
        edges = len(self.edges())  # live ones: those of tombstoned records are hidden
        tombstoned = self.sql.count(
            ExperienceRow,
            ExperienceRow.namespace == self.ns,
            col(ExperienceRow.deleted_at).is_not(None),
        )
        return Stats(
            tombstoned=tombstoned,
            path=path,
            namespace=self.ns,
            experiences=sum(by_outcome.values()),
            experiences_by_outcome=by_outcome,
            skills=sum(by_status.values()),
            skills_by_status=by_status,
            edges=edges,
            events=events,
            indexed=total - pending,
            pending_index=pending,
            model=model,
            dim=dim,
            schema_version=schema_version,
        )
