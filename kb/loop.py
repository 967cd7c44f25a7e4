"""The Reason-Retrieve-Refine loop of ``KnowledgeBase``: retrieve, refine, admission control, outcome-aware ranking."""

from __future__ import annotations


class LoopOps:
    """Mixed into :class:`kb.service.KnowledgeBase`."""
