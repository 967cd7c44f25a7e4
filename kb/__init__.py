"""An experience memory and skill library for LLM agents.

>>> from kb import KnowledgeBase
>>> with KnowledgeBase.open("./store") as kb:
...     kb.add_experience({"task": "refund a damaged item", "outcome": "success"})
"""

from kb.errors import Conflict, Invalid, KBError, ModelMismatch, NotFound, SandboxError
from kb.models import (
    Attribution,
    Edge,
    Experience,
    ExperienceCreate,
    ExperienceUpdate,
    Outcome,
    SearchHit,
    Skill,
    SkillCreate,
    SkillMode,
    SkillStatus,
    Step,
)
from kb.service import AddResult, KnowledgeBase

__all__ = [
    "AddResult",
    "Attribution",
    "Conflict",
    "Edge",
    "Experience",
    "ExperienceCreate",
    "ExperienceUpdate",
    "Invalid",
    "KBError",
    "KnowledgeBase",
    "ModelMismatch",
    "NotFound",
    "Outcome",
    "SandboxError",
    "SearchHit",
    "Skill",
    "SkillCreate",
    "SkillMode",
    "SkillStatus",
    "Step",
]
