"""OpenAI chat-format trajectories: a list of messages, ``{"messages": [...]}``, or the tau-bench
wrapper ``{task_id, reward, info, traj}`` (reward 1.0 = success).

One step per message, system message included, step index = position in the message list
(0-based): failure labels (``kb.trace.labels``) count steps that way. An assistant message with
several tool calls is one step whose ``args`` are ``{"calls": [{tool, args}, ...]}``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from typing import Any

from kb.importers.base import MATCH, Check, Format, miss, rest
from kb.models import ExperienceCreate, Outcome, Provenance, Step

PART_TYPES = {"text", "image_url", "input_audio", "file", "refusal"}
MESSAGE_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id"}
WRAPPER_KEYS = {"traj", "messages", "task", "info", "reward", "outcome", "task_id", "id", "trial"}
WRAPPER_KEYS |= {"agent", "domain"}


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
    """Whether a tool reply reads as an error (formats with no explicit error flag use this)."""
    if not text:
        return False
    head = text.strip()[:200].lower()
    return head.startswith(("error", "exception", "traceback")) or "error:" in head[:40]


def steps_from_messages(messages: list[Any]) -> list[Step]:
    """One step per OpenAI chat message (see the module docstring)."""
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


def _step_extras(messages: list[Any]) -> dict[str, dict[str, Any]]:
    """Message keys a step has no place for (``refusal``, ``audio``...), by step index."""
    extras: dict[str, dict[str, Any]] = {}
    for index, message in enumerate(messages):
        extra = rest(message, MESSAGE_KEYS)
        if extra.get("index") == index:  # tau-bench numbers its messages like the steps
            extra.pop("index")
        if extra:
            extras[str(index)] = extra
    return extras


def from_openai(record: Any, *, source: str, domain: str | None = None) -> ExperienceCreate:
    """Convert a chat transcript or a tau-bench record (see the module docstring)."""
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
    artifacts: dict[str, Any] = {k: wrapper[k] for k in ("trial",) if k in wrapper}
    artifacts.update(rest(wrapper, WRAPPER_KEYS))
    if isinstance(info, Mapping):
        unmapped = rest(info, {"task"})
        task_rest = rest(task_info, {"instruction", "actions", "outputs"})
        if task_rest:
            unmapped["task"] = task_rest
        if unmapped:
            artifacts["info"] = unmapped
    extras = _step_extras(messages)
    if extras:
        artifacts["steps"] = extras
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


# -- detection -----------------------------------------------------------------------------------
def check_messages(messages: Any) -> Check:
    """A non-empty list of chat messages whose content is text or OpenAI content parts."""
    if not isinstance(messages, list) or not messages:
        return miss("an empty message list" if messages == [] else "a list of messages", 0.1)
    with_role = [m for m in messages if isinstance(m, Mapping) and isinstance(m.get("role"), str)]
    if len(with_role) < len(messages):
        return miss("every message needs a role", 0.5 * len(with_role) / len(messages))
    for index, message in enumerate(messages):
        content = message.get("content")
        if isinstance(content, str):
            parsed = _maybe_literal(content)  # a dump's stringified parts; JSON text is text
            content = parsed if isinstance(parsed, list) else None
        if isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, Mapping) else None
                if isinstance(part, Mapping) and kind is not None and kind not in PART_TYPES:
                    return miss(
                        f"message {index} has a {kind!r} part, not an OpenAI chat part", 0.6
                    )
        elif not (content is None or isinstance(content, str)):
            return miss(f"message {index} content is neither text nor a list of parts", 0.5)
    return MATCH


def check(record: Any) -> Check:
    if isinstance(record, list):
        return check_messages(record)
    if not isinstance(record, Mapping):
        return miss("a list of messages or an object with messages/traj")
    key = "traj" if "traj" in record else "messages"
    if key not in record:
        return miss("no messages/traj list")
    verdict = check_messages(record[key])
    if not verdict.ok:
        return miss(f"{key}: {verdict.missing}", max(0.3, verdict.score))
    return MATCH


def convert(record: Any, *, source: str, domain: str | None = None) -> ExperienceCreate:
    return from_openai(record, source=source, domain=domain)


FORMAT = Format(
    name="openai",
    summary="OpenAI chat messages, {messages: [...]}, or tau-bench {task_id, reward, info, traj}",
    check=check,
    convert=convert,
)

__all__ = [
    "FORMAT",
    "check_messages",
    "from_openai",
    "looks_like_error",
    "steps_from_messages",
]
