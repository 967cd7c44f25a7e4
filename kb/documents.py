"""What of a record gets embedded, what goes into the full-text index, and its signature tokens."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from kb.models import Experience, Skill

EMBED_CHARS = 1_500
"""The embedding model reads ~256 tokens; longer text only costs time."""
FTS_CHARS = 12_000
_WORD = re.compile(r"[^\w\s]+", re.UNICODE)


def _join(parts: Sequence[str | None], limit: int) -> str:
    return "\n".join(p for p in parts if p)[:limit]


def experience_embed_text(exp: Experience) -> str:
    lessons = "; ".join(exp.lessons)
    return _join([exp.task, exp.strategy, " -> ".join(exp.plan), lessons], EMBED_CHARS)


def experience_fts_text(exp: Experience) -> str:
    step_text = [s.content or s.error or "" for s in exp.steps if s.role != "system"]
    reason = exp.attribution.reason if exp.attribution else None
    return _join(
        [
            exp.task,
            exp.strategy,
            " ".join(exp.plan),
            " ".join(exp.lessons),
            exp.domain,
            " ".join(exp.tags),
            " ".join(dict.fromkeys(exp.signature)),
            reason,
            exp.final_answer,
            " ".join(step_text),
        ],
        FTS_CHARS,
    )


def skill_embed_text(skill: Skill) -> str:
    return _join(
        [skill.name.replace("-", " "), skill.description, skill.scope, " ".join(skill.steps)],
        EMBED_CHARS,
    )


def skill_fts_text(skill: Skill) -> str:
    params = " ".join(skill.parameters.get("properties", {}))
    name = skill.name.replace("-", " ")
    # The name is repeated: a word of the name says more about a skill than a word of its prose.
    return _join(
        [
            name,
            name,
            skill.description,
            skill.scope,
            " ".join(skill.steps),
            " ".join(skill.tags),
            skill.domain,
            params,
        ],
        FTS_CHARS,
    )


def signature_tokens(signature: Sequence[str]) -> str:
    """Tokens for structural matching: each tool, and each pair of consecutive tools."""
    tools = [_tool_token(t) for t in signature if t]
    pairs = [f"{a}>{b}" for a, b in itertools.pairwise(tools)]
    return " ".join(tools + pairs)


def _tool_token(tool: str) -> str:
    return re.sub(r"\s+", "_", tool.strip().lower())


def fts_query(text: str, max_terms: int = 64) -> str:
    """A full-text query with the syntax characters removed (user text is never query syntax)."""
    words = _WORD.sub(" ", text).split()
    return " ".join(words[:max_terms])
