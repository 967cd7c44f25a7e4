"""API tokens of ``KnowledgeBase`` for the HTTP MCP server: created, listed, revoked, stored hashed."""

from __future__ import annotations


class TokenOps:
    """Mixed into :class:`kb.service.KnowledgeBase`."""
