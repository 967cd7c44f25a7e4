"""OpenAI Responses API items, Response objects, and OpenAI Agents SDK ``RunState`` dumps.

Items (``{type, ...}``; an input message may also be a bare ``{role, content}``):

* ``message`` -> a message step (``input_text``/``output_text``/``refusal`` parts);
* ``function_call`` / ``custom_tool_call`` / ``program`` and every other ``*_call``
  (``web_search_call``, ``computer_call``, ``tool_search_call``, ``mcp_call``...) -> a ``tool_call``
  step (tool = ``name``, else the type without ``_call``); an item that carries its own
  result (``output``, ``outputs``, ``results``, ``error``: ``mcp_call``, ``code_interpreter_call``)
  adds an observation step;
* ``*_output`` (``function_call_output``, ``custom_tool_call_output``, ``program_output``,
  ``tool_search_output``...) -> an observation step, linked to its call by ``call_id``
  (``status: failed`` -> ``error``);
* ``reasoning`` -> a thinking step (the summary text); approval requests -> ``approval`` steps.

A ``RunState`` (``RunState.to_json()``) is ``{$schemaVersion, original_input, generated_items:
[{type: ..._item, agent: {name}, raw_item}], model_responses, current_step, trace, ...}``: the
task is ``original_input``, the steps its items then the generated items (agent = the item's
agent), ``source_id`` the trace id; the rest of the state is kept in ``artifacts``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kb.importers.base import (
    MATCH,
    Check,
    Draft,
    Format,
    StepLog,
    as_args,
    as_text,
    build_experience,
    miss,
    rest,
    text_of,
)
from kb.importers.messages import Message, Part, add_message, block_parts, role_of
from kb.models import ExperienceCreate, Outcome

RESPONSES_PART_TYPES = {"input_text", "output_text", "input_image", "input_file", "input_audio"}
RESULT_KEYS = ("output", "outputs", "results", "result")
CALL_MAPPED = {"type", "id", "call_id", "status", "name", "arguments", "input", "code"}
CALL_MAPPED |= {"error", *RESULT_KEYS}


def _is_item(item: Any) -> bool:
    if not isinstance(item, Mapping):
        return False
    kind = item.get("type")
    if kind == "message" or (kind is None and isinstance(item.get("role"), str)):
        return "content" in item
    return isinstance(kind, str) and (
        kind.endswith(("_call", "_output"))
        or kind in {"reasoning", "program", "item_reference", "compaction"}
        or kind.startswith("mcp_")
    )


def _is_responses_specific(item: Mapping[str, Any]) -> bool:
    """An item no chat message could be: a typed item, or a message with Responses parts."""
    if item.get("type") not in (None, "message"):
        return True
    content = item.get("content")
    return isinstance(content, list) and any(
        isinstance(p, Mapping) and p.get("type") in RESPONSES_PART_TYPES for p in content
    )


def check_items(items: Any) -> Check:
    if not isinstance(items, list) or not items:
        return miss("a non-empty list of Responses items")
    good = [i for i in items if _is_item(i)]
    if len(good) < len(items):
        return miss("items need a Responses type (message, function_call, ...)", 0.3)
    if not any(_is_responses_specific(i) for i in good):
        return miss("no Responses-only item (function_call, reasoning, output_text...)", 0.4)
    return MATCH


def _is_run_state(record: Any) -> bool:
    return (
        isinstance(record, Mapping)
        and isinstance(record.get("generated_items"), list)
        and ("original_input" in record or "$schemaVersion" in record)
    )


def check(record: Any) -> Check:
    if isinstance(record, list):
        return check_items(record)
    if not isinstance(record, Mapping):
        return miss("a list of Responses items, a Response or a RunState")
    if _is_run_state(record):
        return MATCH
    if "generated_items" in record or "model_responses" in record:
        return miss("a RunState needs generated_items and original_input", 0.7)
    if record.get("object") == "response" and isinstance(record.get("output"), list):
        return MATCH
    if isinstance(record.get("output"), list) and "input" in record:
        verdict = check_items(record["output"])
        return verdict if verdict.ok else miss(f"output: {verdict.missing}", 0.3)
    return miss("no generated_items, output items or item list")


# -- items to steps ------------------------------------------------------------------------------
def _output_text(value: Any) -> str | None:
    if isinstance(value, list):
        return text_of(value) or as_text(value)
    return as_text(value)


def add_item(log: StepLog, item: Mapping[str, Any], *, agent: str | None = None) -> None:
    """The steps of one Responses item (see the module docstring)."""
    kind = str(item.get("type") or "message")
    if kind == "message":
        role = role_of(item.get("role"))
        content = item.get("content")
        parts: list[Part] = []
        for block in content if isinstance(content, list) else [content]:
            parts += block_parts(block)
        extra = rest(item, {"type", "role", "content"})
        add_message(log, Message(role=role, parts=parts, agent=agent, extra=extra))
        return
    if kind == "reasoning":
        summary = text_of(item.get("summary")) or text_of(item.get("content"))
        extra = rest(item, {"type", "summary", "content"} if summary else {"type"})
        log.add(Draft(kind="thinking", role="assistant", agent=agent, content=summary, extra=extra))
        return
    if kind in {"mcp_approval_request", "mcp_list_tools", "mcp_approval_response"}:
        name = item.get("name")
        content = f"approval requested for {name}" if kind == "mcp_approval_request" else None
        log.add(
            Draft(
                kind="approval" if "approval" in kind else kind,
                role="assistant",
                agent=agent,
                content=content,
                args=as_args(item.get("arguments")),
                extra=rest(item, {"arguments"}),
            )
        )
        return
    if kind.endswith("_output"):
        call_id = item.get("call_id")
        output = next((item[k] for k in (*RESULT_KEYS, "tools") if k in item), None)
        failed = item.get("status") in {"failed", "incomplete"}
        draft = Draft(
            role="tool",
            agent="tool",
            tool=None if call_id else kind.removesuffix("_output").removesuffix("_call"),
            result=None if failed else _output_text(output),
            error=(_output_text(output) or f"{kind} {item['status']}") if failed else None,
            extra=rest(item, {"type", "call_id", *RESULT_KEYS, "tools"}),
        )
        if kind not in {"function_call_output", "custom_tool_call_output"}:
            draft.extra["type"] = kind
        log.result(draft, call_id)
        return
    if kind.endswith("_call") or kind == "program":
        call_id = item.get("call_id") or (item.get("id") if kind == "mcp_call" else None)
        tool = item.get("name") or kind.removesuffix("_call")
        if "arguments" in item:
            args = as_args(item["arguments"])
        elif kind == "custom_tool_call":
            args = {"input": item.get("input")}
        elif "code" in item:
            args = {"code": item["code"]}
        else:
            args = rest(item, CALL_MAPPED) or None
        extra = rest(item, CALL_MAPPED) if "arguments" in item or "code" in item else {}
        extra.update({k: item[k] for k in ("id", "status") if item.get(k) is not None})
        if kind not in {"function_call", "custom_tool_call"}:
            extra["type"] = kind
        log.call(Draft(role="assistant", agent=agent, tool=tool, args=args, extra=extra), call_id)
        output = next((item[k] for k in RESULT_KEYS if item.get(k) is not None), None)
        failed = item.get("status") == "failed" or item.get("error") is not None
        if output is not None or failed:
            error = as_text(item.get("error")) or (f"{kind} failed" if failed else None)
            log.result(
                Draft(
                    role="tool", agent="tool", tool=tool, result=_output_text(output), error=error
                ),
                call_id,
            )
        return
    log.add(
        Draft(
            kind=kind if len(kind) <= 50 else "other",
            role="assistant",
            agent=agent,
            extra=rest(item, {"type"}),
        )
    )


def _add_run_item(log: StepLog, item: Mapping[str, Any]) -> None:
    agent_info = item.get("agent")
    agent = agent_info.get("name") if isinstance(agent_info, Mapping) else None
    raw = item.get("raw_item")
    wrapper = rest(item, {"type", "agent", "raw_item", "output"})
    if isinstance(raw, Mapping) and "output" in item and item["output"] not in raw.values():
        wrapper["output"] = item["output"]
    if item.get("type") == "tool_approval_item":
        name = item.get("tool_name") or (raw.get("name") if isinstance(raw, Mapping) else None)
        log.add(
            Draft(
                kind="approval",
                role="assistant",
                agent=agent,
                content=f"approval requested for {name}",
                args=as_args(raw.get("arguments")) if isinstance(raw, Mapping) else None,
                extra=wrapper,
            )
        )
        return
    if not isinstance(raw, Mapping):
        raise ValueError(f"generated item of type {item.get('type')!r} has no raw_item object")
    before = len(log)
    add_item(log, raw, agent=agent)
    if wrapper and len(log) > before:
        first = log.drafts[before]
        first.extra = {**wrapper, **first.extra}


def _input_items(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list):
        return [v if isinstance(v, Mapping) else {"role": "user", "content": v} for v in value]
    return []


def convert(record: Any, *, source: str, domain: str | None = None) -> ExperienceCreate:
    log = StepLog()
    artifacts: dict[str, Any] = {}
    agent: str | None = None
    source_id: Any = None
    final: str | None = None
    task: str | None = None
    if _is_run_state(record):
        for item in _input_items(record.get("original_input")):
            add_item(log, item)
        for item in record["generated_items"]:
            if not isinstance(item, Mapping):
                raise ValueError("generated_items: expected objects")
            _add_run_item(log, item)
        current = record.get("current_agent")
        agent = current.get("name") if isinstance(current, Mapping) else None
        trace = record.get("trace")
        source_id = trace.get("id") if isinstance(trace, Mapping) else None
        step = record.get("current_step")
        if isinstance(step, Mapping) and step.get("type") == "next_step_final_output":
            data = step.get("data")
            final = as_text(data.get("output") if isinstance(data, Mapping) else data)
        original = record.get("original_input")
        task = original if isinstance(original, str) else None
        artifacts = rest(record, {"original_input", "generated_items", "current_agent"})
    elif isinstance(record, Mapping):
        if record.get("object") == "response":
            if record.get("instructions"):
                add_item(log, {"role": "system", "content": record["instructions"]})
            source_id = record.get("id")
            agent = record.get("model")
        for item in _input_items(record.get("input")):
            add_item(log, item)
        for item in record.get("output") or []:
            add_item(log, item)
        artifacts = rest(record, {"input", "output", "instructions"})
    elif isinstance(record, list):
        for index, item in enumerate(record):
            if not isinstance(item, Mapping):
                raise ValueError(f"item {index}: expected an object")
            add_item(log, item)
    else:
        raise ValueError("expected a list of Responses items, a Response or a RunState")
    return build_experience(
        log,
        task=task or log.first_user_text(),
        source=source,
        domain=domain,
        source_id=source_id,
        artifacts=artifacts,
        agent=agent,
        outcome=Outcome.unknown,
        final_answer=final or log.final_text(),
    )


FORMAT = Format(
    name="openai-responses",
    summary="OpenAI Responses items, Response objects, Agents SDK RunState",
    check=check,
    convert=convert,
)

__all__ = ["FORMAT", "add_item", "check_items"]
