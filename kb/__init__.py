"""An experience memory and skill library for LLM agents.

>>> from kb import KnowledgeBase
>>> with KnowledgeBase.open("./store") as kb:
...     kb.add_experience({"task": "refund a damaged item", "outcome": "success"})

Names are imported on first use, so that ``kb --help`` and the light commands stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "KnowledgeBase": "kb.service",
    "AddResult": "kb.service",
    "KBError": "kb.errors",
    "NotFound": "kb.errors",
    "Invalid": "kb.errors",
    "Conflict": "kb.errors",
    "ModelMismatch": "kb.errors",
    "SandboxError": "kb.errors",
    "Attribution": "kb.models",
    "Edge": "kb.models",
    "Experience": "kb.models",
    "ExperienceCreate": "kb.models",
    "ExperienceUpdate": "kb.models",
    "Outcome": "kb.models",
    "SearchHit": "kb.models",
    "Skill": "kb.models",
    "SkillCreate": "kb.models",
    "SkillMode": "kb.models",
    "SkillStatus": "kb.models",
    "Step": "kb.models",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kb' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
