"""The store's own shape: :class:`kb.models.ExperienceCreate` objects, or a bare list of
:class:`kb.models.Step` dicts (the task is then the first user step's content)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kb.importers.base import MATCH, Check, Format, miss
from kb.models import ExperienceCreate, Step

EXPERIENCE_KEYS = set(ExperienceCreate.model_fields)
STEP_KEYS = set(Step.model_fields)
STEP_ONLY_KEYS = STEP_KEYS - {"role", "content", "index"}
"""Keys that tell a Step dict from a chat message ``{role, content}`` (tau-bench numbers its
messages with ``index`` too)."""


def is_step_list(record: Any) -> bool:
    """A non-empty list of Step-shaped dicts, at least one with a Step-only key (kind, tool...)."""
    return (
        isinstance(record, list)
        and bool(record)
        and all(isinstance(s, Mapping) and set(s) <= STEP_KEYS for s in record)
        and any(set(s) & STEP_ONLY_KEYS for s in record)
    )


def check(record: Any) -> Check:
    if is_step_list(record):
        return MATCH
    if not isinstance(record, Mapping):
        return miss("an experience object (task, steps, outcome...)")
    keys = set(record)
    known = keys & EXPERIENCE_KEYS
    if not known:
        return miss("no experience field (task, steps, outcome...)")
    unknown = sorted(keys - EXPERIENCE_KEYS)
    if "task" not in keys:
        return miss(f"has {', '.join(sorted(known))} but no task", 0.8)
    if unknown:
        return miss(f"has a task but also {', '.join(unknown[:5])}, not experience fields", 0.6)
    steps = record.get("steps")
    if steps is not None and not (
        isinstance(steps, list)
        and all(isinstance(s, Mapping) and set(s) <= STEP_KEYS for s in steps)
    ):
        return miss("steps are not Step objects (index, role, kind, content, tool...)", 0.7)
    return MATCH


def convert(record: Any, *, source: str, domain: str | None = None) -> ExperienceCreate:
    if isinstance(record, list):
        return _from_steps(record, source=source, domain=domain)
    if not isinstance(record, Mapping):
        raise ValueError("a native record must be a JSON object")
    data = dict(record)
    data.setdefault("provenance", {"source": "import", "imported_from": source})
    if domain and not data.get("domain"):
        data["domain"] = domain
    return ExperienceCreate.model_validate(data)


def _from_steps(steps: list[Any], *, source: str, domain: str | None) -> ExperienceCreate:
    numbered: list[dict[str, Any]] = []
    moved: dict[str, dict[str, Any]] = {}
    for position, step in enumerate(steps):
        if not isinstance(step, Mapping):
            raise ValueError(f"steps[{position}]: expected an object")
        data = dict(step)
        if data.get("index", position) != position:
            moved[str(position)] = {"index": data["index"]}
        data["index"] = position
        numbered.append(data)
    task = next(
        (
            s.get("content")
            for s in numbered
            if s.get("role") == "user"
            and s.get("kind", "message") == "message"
            and s.get("content")
        ),
        None,
    )
    if not task:
        raise ValueError("task: no task text (no user step)")
    return ExperienceCreate.model_validate(
        {
            "task": task,
            "steps": numbered,
            "domain": domain,
            "artifacts": {"steps": moved} if moved else {},
            "provenance": {"source": "import", "imported_from": source},
        }
    )


FORMAT = Format(
    name="native",
    summary="kb experiences (ExperienceCreate JSON), or a list of Step dicts",
    check=check,
    convert=convert,
)
