"""Token rows of the HTTP MCP server: stored hashed, bound to one namespace each."""

from __future__ import annotations

from sqlmodel import Session, col, select

from kb.models import TokenRow
from kb.stores.sql import SQLStore


class TokenStore:
    """Reads and writes of the ``tokens`` table (every namespace: an operator's tool)."""

    def __init__(self, sql: SQLStore):
        self.sql = sql

    def add(self, row: TokenRow) -> TokenRow:
        with self.sql.session() as session:
            session.add(row)
        return row

    def all(self) -> list[TokenRow]:
        with Session(self.sql.engine) as session:
            return list(session.exec(select(TokenRow).order_by(col(TokenRow.created_at))).all())

    def revoke(self, token_id: str) -> TokenRow | None:
        with self.sql.session() as session:
            row = session.get(TokenRow, token_id)
            if row is not None:
                row.revoked = True
                session.add(row)
            return row

    def by_hash(self, digest: str) -> TokenRow | None:
        with Session(self.sql.engine) as session:
            return session.exec(select(TokenRow).where(TokenRow.hash == digest)).first()
