"""Multi-agent chat logs: ``{question, ground_truth?, history: [{role, name?, content}]}``.

One step per history entry, agent = ``name`` else ``role``, step index = position in ``history``
(0-based). A log that carries ``mistake_agent`` / ``mistake_step`` / ``mistake_reason`` (a human
failure attribution; ``mistake_step`` is the 0-based position in ``history``, so the step index)
imports it as ``attribution`` with ``method="label"`` and full confidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kb.importers.base import MATCH, Check, Format, miss, rest
from kb.importers.openai_chat import _text, looks_like_error
from kb.models import Attribution, ExperienceCreate, Outcome, Provenance, Step

ENTRY_KEYS = {"role", "name", "content"}
RECORD_KEYS = {"question", "task", "ground_truth", "outcome", "is_correct", "id", "question_ID"}
RECORD_KEYS |= {"task_id", "domain", "history", "mistake_agent", "mistake_step", "mistake_reason"}


def _attribution(record: Mapping[str, Any], steps: list[Step]) -> Attribution | None:
    if not any(record.get(k) not in (None, "") for k in ("mistake_agent", "mistake_step")):
        return None
    raw_step = record.get("mistake_step")
    step: int | None = None
    if raw_step not in (None, ""):
        try:
            step = int(str(raw_step).strip())
        except ValueError as exc:
            raise ValueError(f"mistake_step: {raw_step!r} is not a step number") from exc
        if not 0 <= step < len(steps):
            raise ValueError(
                f"mistake_step: {step} is outside the history (0 to {len(steps) - 1}, "
                "the 0-based position in history)"
            )
    agent = record.get("mistake_agent")
    return Attribution(
        agent=None if agent in (None, "") else str(agent),
        step=step,
        reason=str(record.get("mistake_reason") or ""),
        method="label",
        confidence=1.0,
    )


def from_multiagent(
    record: Mapping[str, Any], *, source: str, domain: str | None = None
) -> ExperienceCreate:
    """Convert one multi-agent log (see the module docstring)."""
    history = record.get("history")
    if not isinstance(history, list) or not history:
        raise ValueError("history: expected a non-empty list of {role, name?, content}")
    steps = []
    extras: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(history):
        if not isinstance(entry, Mapping):
            raise ValueError(f"history[{index}]: expected an object")
        content = _text(entry.get("content"))
        agent = entry.get("name") or entry.get("role") or "unknown"
        steps.append(
            Step(
                index=index,
                agent=str(agent),
                role=str(entry.get("role") or agent),
                kind="message",
                content=content,
                error=content if looks_like_error(content) else None,
            )
        )
        extra = rest(entry, ENTRY_KEYS)
        if extra:
            extras[str(index)] = extra
    question = record.get("question") or record.get("task")
    if not question:
        raise ValueError("question: missing")
    truth = record.get("ground_truth")
    attribution = _attribution(record, steps)
    outcome = record.get("outcome")
    if outcome is None and "is_correct" in record:
        outcome = "success" if record["is_correct"] else "failure"
    if outcome is None and attribution is not None:
        outcome = "failure"  # a mistake label marks the step that made the run fail
    source_id = record.get("id", record.get("question_ID", record.get("task_id")))
    artifacts = rest(record, RECORD_KEYS)
    if extras:
        artifacts["steps"] = extras
    return ExperienceCreate(
        task=str(question)[:20_000],
        agent="team",
        domain=domain or record.get("domain"),
        outcome=Outcome(outcome or "unknown"),
        steps=steps,
        final_answer=next((s.content for s in reversed(steps) if s.content), None),
        ground_truth=None if truth is None else str(truth),
        artifacts=artifacts,
        attribution=attribution,
        provenance=Provenance(
            source="import",
            imported_from=source,
            source_id=None if source_id is None else str(source_id),
        ),
    )


def check(record: Any) -> Check:
    if not isinstance(record, Mapping) or "history" not in record:
        return miss("an object with a history list")
    history = record["history"]
    if not isinstance(history, list) or not history:
        return miss("history is not a non-empty list", 0.5)
    entries = [
        e
        for e in history
        if isinstance(e, Mapping) and "content" in e and ({"role", "name"} & set(e))
    ]
    if len(entries) < len(history):
        return miss("history entries need content and a role or name", 0.5)
    if not any(isinstance(record.get(k), str) and record[k] for k in ("question", "task")):
        return miss("no question (or task) next to the history", 0.8)
    return MATCH


def convert(record: Any, *, source: str, domain: str | None = None) -> ExperienceCreate:
    if not isinstance(record, Mapping):
        raise ValueError("a multi-agent log must be an object with a history list")
    return from_multiagent(record, source=source, domain=domain)


FORMAT = Format(
    name="multiagent",
    summary="multi-agent logs {question, history: [{role, name?, content}], mistake_*?}",
    check=check,
    convert=convert,
)
