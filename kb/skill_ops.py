"""Skill lifecycle operations of ``KnowledgeBase``: versions, validation, runs, mining, curation."""

from __future__ import annotations


class SkillOps:
    """Mixed into :class:`kb.service.KnowledgeBase`."""
