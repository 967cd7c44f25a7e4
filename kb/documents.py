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


EXCERPT_CHARS = 2_000
_TROUBLE = re.compile(r"error|exception|traceback|failed|denied|invalid", re.IGNORECASE)


def excerpt(text: str | None, limit: int = EXCERPT_CHARS) -> str:
    """A bounded window of a long step text for indexing and display: its head, then the
    passages around the first words that signal trouble (error, exception, traceback, failed,
    denied, invalid). The stored text stays whole."""
    text = text or ""
    if len(text) <= limit:
        return text
    head = text[: limit // 2]
    parts = [head]
    budget = limit - len(head)
    for match in _TROUBLE.finditer(text, len(head)):
        start = max(len(head), match.start() - 200)
        piece = text[start : match.end() + 300]
        parts.append(piece[:budget])
        budget -= len(parts[-1])
        if budget <= 0:
            break
    return " … ".join(parts)


def experience_fts_text(exp: Experience) -> str:
    step_text = [excerpt(s.content or s.error) for s in exp.steps if s.role != "system"]
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
