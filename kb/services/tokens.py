"""API tokens for the HTTP MCP server: created, listed, revoked, stored hashed.

A token is bound to one namespace: the HTTP server serves a request in the namespace of the token
that came with it. Only the SHA-256 of a token is stored; the secret is shown once, at creation.
Token management spans the whole store (every namespace): it is an operator's tool.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from pydantic import BaseModel

from kb.errors import Invalid, NotFound
from kb.models import TokenRow, check_namespace, new_id
from kb.services import Service

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


class Tokens(Service):
    """The store's tokens (every namespace); new ones default to this service's namespace."""

    def create(self, name: str, namespace: str | None = None) -> NewToken:
        """Create a bearer token bound to ``namespace`` (default: this handle's). The returned
        ``secret`` is shown once; only its hash is stored."""
        name = name.strip()
        if not name or len(name) > MAX_TOKEN_NAME:
            raise Invalid(f"token name must be 1 to {MAX_TOKEN_NAME} characters")
        try:
            namespace = check_namespace(namespace or self.namespace)
        except ValueError as exc:
            raise Invalid(str(exc)) from exc
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = TokenRow(id=new_id("tok"), namespace=namespace, name=name, hash=hash_token(secret))
        self.store.tokens.add(row)
        return NewToken(**_info(row).model_dump(), secret=secret)

    def all(self, *, include_revoked: bool = True) -> list[TokenInfo]:
        """Every token of the store (all namespaces), oldest first, without secrets."""
        return [_info(r) for r in self.store.tokens.all() if include_revoked or not r.revoked]

    def revoke(self, token_id: str) -> TokenInfo:
        """Revoke a token by id; requests bearing it are refused from then on."""
        row = self.store.tokens.revoke(token_id)
        if row is None:
            raise NotFound(f"no token {token_id!r}; `kb token list` shows the ids")
        return _info(row)

    def resolve(self, secret: str) -> str | None:
        """The namespace a live token is bound to, or None for an unknown or revoked token."""
        if not secret or not secret.startswith(TOKEN_PREFIX):
            return None
        row = self.store.tokens.by_hash(hash_token(secret))
        if row is None or row.revoked:
            return None
        return row.namespace


__all__ = ["NewToken", "TokenInfo", "Tokens", "hash_token"]
