"""Turn files of other shapes into experiences.

Formats (``format="auto"`` picks by content):

* ``native``: JSON or JSONL of :class:`kb.models.ExperienceCreate` objects.
* ``openai``: OpenAI chat-format trajectories: a list of messages, ``{"messages": [...]}``, or the
  tau-bench wrapper ``{task_id, reward, info, traj}`` (reward 1.0 = success). One step per message,
  system message included, step index = position in the message list (0-based).
* ``multiagent``: ``{question, ground_truth?, history: [{role, name?, content}]}``; one step per
  history entry, agent = ``name`` else ``role``.
* ``kb``: the store's own lossless export (handled by the service, which owns vectors and edges).
* ``labels``: failure labels in the tau-retail ``failure_labels.json`` format (see ``kb.trace``).

A file holds one record, a JSON list of records, or JSONL (one record per line).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kb.errors import ImportFailed
from kb.models import ExperienceCreate, Outcome, Provenance, Step

FORMATS = ("auto", "native", "openai", "multiagent", "kb", "labels")
MAX_FILE_BYTES = 512 * 1024 * 1024
KB_TYPES = {"meta", "experience", "skill", "edge", "event", "validation"}


def read_records(path: Path) -> list[Any]:
    """The records of a JSON or JSONL file (a single object counts as one record)."""
    if not path.is_file():
        raise ImportFailed(f"{path}: no such file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ImportFailed(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB")
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if not stripped:
        return []
    if path.suffix == ".jsonl" or (stripped[0] == "{" and "\n{" in stripped.rstrip()):
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ImportFailed(
                        f"{path}: line {number} is not valid JSON ({exc.msg})"
                    ) from exc
        return records
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFailed(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if isinstance(data, list) and data and isinstance(data[0], dict) and "role" in data[0]:
        return [data]  # one bare chat transcript
    return data if isinstance(data, list) else [data]


def detect(record: Any) -> str:
    """The format of one record."""
    if isinstance(record, list):
        return "openai"
    if not isinstance(record, Mapping):
        return "unknown"
    if record.get("type") in KB_TYPES and ("record" in record or "kb_export" in record):
        return "kb"
    if "trajectory_id" in record and "failures" in record:
        return "labels"
    if "traj" in record or "messages" in record:
        return "openai"
    if "history" in record:
        return "multiagent"
    if "task" in record:
        return "native"
    return "unknown"


def to_experience(
    record: Any, fmt: str, *, source: str, domain: str | None = None
) -> ExperienceCreate:
    """Convert one record; raises ``ValueError``/``ValidationError`` naming the field on bad input."""
    if fmt == "native":
        if not isinstance(record, Mapping):
            raise ValueError("a native record must be a JSON object")
        data = dict(record)
        data.setdefault("provenance", {"source": "import", "imported_from": source})
        if domain and not data.get("domain"):
            data["domain"] = domain
        return ExperienceCreate.model_validate(data)
    if fmt == "openai":
        return from_openai(record, source=source, domain=domain)
    if fmt == "multiagent":
        return from_multiagent(record, source=source, domain=domain)
    raise ValueError(
        "unknown record shape: expected an experience (task), a chat trajectory "
        "(messages/traj) or a multi-agent log (history)"
    )


def iter_experiences(
    path: Path, fmt: str = "auto", *, domain: str | None = None
) -> Iterator[tuple[int, ExperienceCreate | ImportFailed]]:
    """Yield ``(record number, experience or the error for that record)`` for a file."""
    for number, record in enumerate(read_records(path), start=1):
        kind = detect(record) if fmt == "auto" else fmt
        try:
            yield number, to_experience(record, kind, source=str(path), domain=domain)
        except (ValueError, ValidationError, TypeError, KeyError) as exc:
            yield number, ImportFailed(f"{path}: record {number}: {describe(exc)}")


def describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err["loc"]) or "record"
            parts.append(f"{where}: {err['msg']}")
        more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        return "; ".join(parts) + more
    return str(exc)


# -- OpenAI chat format -----------------------------------------------------------------------------
def _maybe_literal(value: Any) -> Any:
    """Some dumps stringify nested fields (``"None"``, ``"[{'id': ...}]"``); undo that."""
    if isinstance(value, str) and value[:1] in "[{" and value[-1:] in "]}":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            try:
                return ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return value
    if value == "None":
        return None
    return value


def _text(content: Any) -> str | None:
    parsed = _maybe_literal(content)
    if parsed is None:
        return None
    parts = isinstance(parsed, list) and (
        not isinstance(content, str)
        or (bool(parsed) and all(isinstance(p, Mapping) and "text" in p for p in parsed))
    )
    if parts:  # content parts (a list, or a dump's stringified list)
        return "\n".join(
            str(p.get("text", "")) if isinstance(p, Mapping) else str(p) for p in parsed
        )
    # Text stays as written: a tool's JSON reply stays JSON, not the Python repr of its parse.
    return content if isinstance(content, str) else str(parsed)


def _args(raw: Any) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, str) and raw.strip():
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            return {"_raw": raw}
        return parsed if isinstance(parsed, dict) else {"_value": parsed}
    return {}


def looks_like_error(text: str | None) -> bool:
    if not text:
        return False
    head = text.strip()[:200].lower()
    return head.startswith(("error", "exception", "traceback")) or "error:" in head[:40]


def steps_from_messages(messages: list[Any]) -> list[Step]:
    steps: list[Step] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"message {index} is not an object")
        role = str(message.get("role") or "unknown")
        content = _text(message.get("content"))
        calls = _maybe_literal(message.get("tool_calls")) or []
        step: dict[str, Any] = {
            "index": index,
            "role": role,
            "agent": message.get("name") or role,
            "content": content,
            "kind": "message",
        }
        if role == "assistant" and calls:
            functions = [c.get("function", c) for c in calls if isinstance(c, Mapping)]
            step["kind"] = "tool_call"
            step["tool"] = functions[0].get("name")
            step["args"] = _args(functions[0].get("arguments"))
            if len(functions) > 1:
                step["args"] = {
                    "calls": [
                        {"tool": f.get("name"), "args": _args(f.get("arguments"))}
                        for f in functions
                    ]
                }
        elif role in {"tool", "function"}:
            step["kind"] = "observation"
            step["agent"] = "tool"
            step["tool"] = message.get("name")
            step["result"] = content
            step["content"] = None
            if looks_like_error(content):
                step["kind"] = "error"
                step["error"] = content
        steps.append(Step.model_validate(step))
    return steps


def from_openai(record: Any, *, source: str, domain: str | None = None) -> ExperienceCreate:
    wrapper: Mapping[str, Any] = record if isinstance(record, Mapping) else {}
    messages = record if isinstance(record, list) else wrapper.get("traj", wrapper.get("messages"))
    if not isinstance(messages, list) or not messages:
        raise ValueError("traj/messages: expected a non-empty list of chat messages")
    steps = steps_from_messages(messages)
    info = _maybe_literal(wrapper.get("info")) or {}
    task_info = info.get("task", {}) if isinstance(info, Mapping) else {}
    first_user = next((s.content for s in steps if s.role == "user" and s.content), None)
    task = wrapper.get("task") if isinstance(wrapper.get("task"), str) else None
    task = task or task_info.get("instruction") or first_user
    if not task:
        raise ValueError("task: no task text (no instruction and no user message)")
    reward = wrapper.get("reward")
    if reward is None:
        outcome = Outcome(wrapper.get("outcome", "unknown"))
    else:
        outcome = Outcome.success if float(reward) >= 1.0 else Outcome.failure
    last_answer = next(
        (s.content for s in reversed(steps) if s.role == "assistant" and s.content), None
    )
    outputs = task_info.get("outputs") or []
    source_id = wrapper.get("task_id", wrapper.get("id"))
    artifacts = {k: wrapper[k] for k in ("trial",) if k in wrapper}
    return ExperienceCreate(
        task=str(task)[:20_000],
        agent=str(wrapper.get("agent") or "assistant"),
        domain=domain or wrapper.get("domain"),
        outcome=outcome,
        score=max(0.0, min(1.0, float(reward))) if reward is not None else None,
        steps=steps,
        final_answer=last_answer,
        ground_truth="; ".join(map(str, outputs)) if outputs else None,
        artifacts=artifacts,
        provenance=Provenance(
            source="import",
            imported_from=source,
            source_id=None if source_id is None else str(source_id),
        ),
        gold_actions=task_info.get("actions") or None,
    )


# -- multi-agent logs ------------------------------------------------------------------------------
def from_multiagent(
    record: Mapping[str, Any], *, source: str, domain: str | None = None
) -> ExperienceCreate:
    history = record.get("history")
    if not isinstance(history, list) or not history:
        raise ValueError("history: expected a non-empty list of {role, name?, content}")
    steps = []
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
    question = record.get("question") or record.get("task")
    if not question:
        raise ValueError("question: missing")
    truth = record.get("ground_truth")
    outcome = record.get("outcome")
    if outcome is None and "is_correct" in record:
        outcome = "success" if record["is_correct"] else "failure"
    source_id = record.get("id", record.get("question_ID", record.get("task_id")))
    return ExperienceCreate(
        task=str(question)[:20_000],
        agent="team",
        domain=domain or record.get("domain"),
        outcome=Outcome(outcome or "unknown"),
        steps=steps,
        final_answer=next((s.content for s in reversed(steps) if s.content), None),
        ground_truth=None if truth is None else str(truth),
        provenance=Provenance(
            source="import",
            imported_from=source,
            source_id=None if source_id is None else str(source_id),
        ),
    )
