"""API tokens of ``KnowledgeBase`` for the HTTP MCP server: created, listed, revoked, stored hashed.

A token is bound to one namespace: the HTTP server serves a request in the namespace of the token
that came with it. Only the SHA-256 of a token is stored; the secret is shown once, at creation.
Token management spans the whole store (every namespace): it is an operator's tool.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlalchemy import select

from kb.errors import Invalid, NotFound
from kb.models import TokenRow, new_id

if TYPE_CHECKING:
    from kb.service import KnowledgeBase
    from kb.stores.sql import SQLStore

TOKEN_PREFIX = "kbt_"
MAX_TOKEN_NAME = 100


def hash_token(secret: str) -> str:
    """The stored form of a token.

    A plain SHA-256 is enough: tokens are 256 random bits, so there is nothing to brute-force and
    a salted slow hash (bcrypt, argon2) would only cost time on every request.
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class TokenInfo(BaseModel):
    """A token as listed: never its secret, never its hash."""

    id: str
    name: str
    namespace: str
    created_at: datetime
    revoked: bool


class NewToken(TokenInfo):
    """A token just created; ``secret`` is shown this once and cannot be recovered."""

    secret: str


def _info(row: TokenRow) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        namespace=row.namespace,
        created_at=row.created_at,
        revoked=row.revoked,
    )


class TokenOps:
    """Mixed into :class:`kb.service.KnowledgeBase`."""

    sql: SQLStore
    namespace: str

    def create_token(self: KnowledgeBase, name: str, namespace: str | None = None) -> NewToken:
        """Create a bearer token for the HTTP MCP server, bound to ``namespace`` (default: this
        handle's). The returned ``secret`` is shown once; only its hash is stored."""
        from kb.service import NAMESPACE_RE

        name = name.strip()
        if not name or len(name) > MAX_TOKEN_NAME:
            raise Invalid(f"token name must be 1 to {MAX_TOKEN_NAME} characters")
        namespace = namespace or self.namespace
        if not NAMESPACE_RE.match(namespace):
            raise Invalid(
                f"namespace {namespace!r} must be 1 to 64 letters, digits, '.', '_' or '-'"
            )
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = TokenRow(id=new_id("tok"), namespace=namespace, name=name, hash=hash_token(secret))
        with self.sql.session() as session:
            session.add(row)
        return NewToken(**_info(row).model_dump(), secret=secret)

    def list_tokens(self: KnowledgeBase, *, include_revoked: bool = True) -> list[TokenInfo]:
        """Every token of the store (all namespaces), oldest first, without secrets."""
        with self.sql.session() as session:
            rows = session.execute(select(TokenRow).order_by(TokenRow.created_at)).scalars().all()  # type: ignore[arg-type]
            return [_info(r) for r in rows if include_revoked or not r.revoked]

    def revoke_token(self: KnowledgeBase, token_id: str) -> TokenInfo:
        """Revoke a token by id; requests bearing it are refused from then on."""
        with self.sql.session() as session:
            row = session.get(TokenRow, token_id)
            if row is None:
                raise NotFound(f"no token {token_id!r}; `kb token list` shows the ids")
            row.revoked = True
            session.add(row)
            return _info(row)

    def resolve_token(self: KnowledgeBase, secret: str) -> str | None:
        """The namespace a live token is bound to, or None for an unknown or revoked token."""
        if not secret or not secret.startswith(TOKEN_PREFIX):
            return None
        with self.sql.session() as session:
            row = session.execute(
                select(TokenRow).where(TokenRow.hash == hash_token(secret))  # type: ignore[arg-type]
            ).scalar_one_or_none()
            if row is None or row.revoked:
                return None
            return row.namespace
