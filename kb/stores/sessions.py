"""Gate sessions, their decisions and the gate policy of one namespace, over SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from kb.models import GateDecisionRow, GatePolicyRow, GateSessionRow, utcnow
from kb.stores.sql import SQLStore


class SessionStore:
    """Reads and writes of gate sessions of one namespace; a session another namespace holds
    under the same run id is a different session, never visible here."""

    def __init__(self, sql: SQLStore, namespace: str):
        self.sql = sql
        self.ns = namespace

    def get(self, run_id: str, *, now: datetime | None = None) -> GateSessionRow | None:
        """The live session of a run (None when there is none or it expired)."""
        with Session(self.sql.engine) as session:
            row = session.get(GateSessionRow, (self.ns, run_id))
        if row is None or _aware(row.expires_at) <= (now or utcnow()):
            return None
        return row

    def version(self, run_id: str) -> int | None:
        """The check count of a stored session (None when there is none): a cheap freshness test."""
        with Session(self.sql.engine) as session:
            return session.exec(
                select(GateSessionRow.seq).where(
                    GateSessionRow.namespace == self.ns, GateSessionRow.run_id == run_id
                )
            ).first()

    def save(
        self,
        session: Session,
        row: GateSessionRow,
        decision: GateDecisionRow,
        *,
        previous_seq: int | None,
    ) -> bool:
        """Store a session's new state with the decision that produced it, inside the caller's
        transaction. Returns False (writing nothing) when another writer advanced the session
        since ``previous_seq`` was read: the caller recomputes from the fresh state."""
        if previous_seq is None:
            existing = session.get(GateSessionRow, (self.ns, row.run_id))
            if existing is not None:
                session.delete(existing)
                session.flush()
                self.sql.delete_where(
                    session,
                    GateDecisionRow,
                    GateDecisionRow.namespace == self.ns,
                    GateDecisionRow.run_id == row.run_id,
                )
            session.add(row)
        else:
            stmt = (
                update(GateSessionRow)
                .where(
                    col(GateSessionRow.namespace) == self.ns,
                    col(GateSessionRow.run_id) == row.run_id,
                    col(GateSessionRow.seq) == previous_seq,
                )
                .values(
                    role=row.role,
                    task=row.task,
                    seq=row.seq,
                    state=row.state,
                    corpus=row.corpus,
                    updated_at=row.updated_at,
                    expires_at=row.expires_at,
                )
            )
            if session.exec(stmt).rowcount != 1:  # type: ignore[call-overload]
                return False
        session.add(decision)
        return True

    def decisions(self, run_id: str) -> list[GateDecisionRow]:
        """A session's decisions, in order."""
        with Session(self.sql.engine) as session:
            return list(
                session.exec(
                    select(GateDecisionRow)
                    .where(GateDecisionRow.namespace == self.ns, GateDecisionRow.run_id == run_id)
                    .order_by(col(GateDecisionRow.seq))
                ).all()
            )

    def recent(self, limit: int, *, now: datetime | None = None) -> list[GateSessionRow]:
        """Live sessions, most recently checked first."""
        with Session(self.sql.engine) as session:
            rows = session.exec(
                select(GateSessionRow)
                .where(
                    GateSessionRow.namespace == self.ns,
                    col(GateSessionRow.expires_at) > (now or utcnow()),
                )
                .order_by(col(GateSessionRow.updated_at).desc())
                .limit(limit)
            ).all()
        return list(rows)

    def expire(self, session: Session, *, now: datetime | None = None) -> None:
        """Delete the namespace's expired sessions and their decisions."""
        cutoff = now or utcnow()
        expired: Sequence[str] = session.exec(
            select(GateSessionRow.run_id).where(
                GateSessionRow.namespace == self.ns, col(GateSessionRow.expires_at) <= cutoff
            )
        ).all()
        if not expired:
            return
        self.sql.delete_where(
            session,
            GateDecisionRow,
            GateDecisionRow.namespace == self.ns,
            col(GateDecisionRow.run_id).in_(list(expired)),
        )
        self.sql.delete_where(
            session,
            GateSessionRow,
            GateSessionRow.namespace == self.ns,
            col(GateSessionRow.run_id).in_(list(expired)),
        )

    # -- policy --------------------------------------------------------------------------------
    def policy(self) -> dict[str, Any] | None:
        with Session(self.sql.engine) as session:
            row = session.get(GatePolicyRow, self.ns)
            return dict(row.data) if row is not None else None

    def set_policy(self, session: Session, data: dict[str, Any]) -> None:
        session.merge(GatePolicyRow(namespace=self.ns, data=data, updated_at=utcnow()))


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


__all__ = ["SessionStore"]
