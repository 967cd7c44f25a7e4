"""Failure tracing of ``KnowledgeBase``: trace, labels, the learned tracer, repair pairs."""

from __future__ import annotations


class TraceOps:
    """Mixed into :class:`kb.service.KnowledgeBase`."""
