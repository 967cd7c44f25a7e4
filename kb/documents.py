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


VECTOR_FORMAT = "fields-1"
"""Version of how a record's vector is made (its fields and their weights below). A store whose
vectors were made another way is re-embedded by ``kb reindex``; ``kb doctor`` reports it."""

EXPERIENCE_VECTOR = {"task": 1.0, "strategy": 1.0, "tools": 0.5}
"""Weight of each field of an experience in its vector (see :func:`vector_fields`). ``tools`` 0.5
was chosen on the tau leave-one-task-out benchmark (hybrid + structure nDCG@5 +1.1 points over the
task alone; 1.0 is no better); ``strategy`` (filled by distillation) is weighted like the task, as
no dev set holds distilled strategies yet."""
SKILL_VECTOR = {"name": 0.5, "description": 1.0, "parameters": 0.25, "steps": 0.25}
"""Weight of each field of a skill in its vector. ``name`` and ``description`` were chosen on the
MetaTool dev half (name 0.5: +3.2 nDCG@10 over one embedding of name and description together);
parameters and steps, which no dev set holds, are kept below the description so that a long
procedure does not drown what the skill is for."""


def experience_fields(exp: Experience) -> dict[str, str]:
    """The fields of an experience that retrieval reads: the task, the (distilled) strategy with
    its plan and lessons, and the tools it called (each once, in order)."""
    return {
        "task": exp.task,
        "strategy": _join([exp.strategy, " -> ".join(exp.plan), "; ".join(exp.lessons)], 2_000),
        "tools": " ".join(dict.fromkeys(t.replace("_", " ") for t in exp.signature)),
    }


def skill_fields(skill: Skill) -> dict[str, str]:
    """The fields of a skill that retrieval reads: its name (words), what it is for (description
    and scope), its parameters (names and descriptions) and its steps."""
    props = skill.parameters.get("properties", {}) if isinstance(skill.parameters, dict) else {}
    params = [
        f"{name.replace('_', ' ')}: {spec.get('description', '')}"
        if isinstance(spec, dict)
        else name.replace("_", " ")
        for name, spec in props.items()
    ]
    return {
        "name": skill.name.replace("-", " "),
        "description": _join([skill.description, skill.scope], EMBED_CHARS),
        "parameters": "; ".join(params),
        "steps": " ".join(skill.steps),
    }


def vector_fields(item: Experience | Skill) -> list[tuple[str, float]]:
    """The texts a record's vector is made of, each with its weight: the vector is the
    normalised weighted sum of their embeddings (so its cosine with a query is close to the
    weighted sum of the fields' cosines). Empty fields and zero weights are left out."""
    if isinstance(item, Experience):
        fields, weights = experience_fields(item), EXPERIENCE_VECTOR
    else:
        fields, weights = skill_fields(item), SKILL_VECTOR
    out = [(text[:EMBED_CHARS], weights[name]) for name, text in fields.items()]
    return [(text, weight) for text, weight in out if text.strip() and weight > 0]


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


EXPERIENCE_LEXICAL = {"task": 1, "strategy": 1, "tools": 1}
"""How many times each field of an experience is written into its full-text document (besides
the domain, tags, attributed cause, final answer and step texts, once each)."""


def experience_fts_text(exp: Experience) -> str:
    step_text = [excerpt(s.content or s.error) for s in exp.steps if s.role != "system"]
    reason = exp.attribution.reason if exp.attribution else None
    fields = experience_fields(exp)
    fields["tools"] = " ".join(dict.fromkeys(exp.signature))  # tool names as they are called
    parts = [text for name, text in fields.items() for _ in range(EXPERIENCE_LEXICAL[name])]
    return _join(
        [*parts, exp.domain, " ".join(exp.tags), reason, exp.final_answer, " ".join(step_text)],
        FTS_CHARS,
    )


SKILL_LEXICAL = {"name": 2, "description": 1, "parameters": 1, "steps": 1}
"""How many times each field of a skill is written into its full-text document (BM25 weight by
repetition; name twice: MetaTool dev half, where once loses half a point and three times gains
nothing)."""


def skill_fts_text(skill: Skill) -> str:
    fields = skill_fields(skill)
    parts = [text for name, text in fields.items() for _ in range(SKILL_LEXICAL[name])]
    return _join([*parts, " ".join(skill.tags), skill.domain], FTS_CHARS)


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
