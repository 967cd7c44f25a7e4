"""Anthropic Messages API conversations.

Shapes: an HTTP recording ``[{request: {body: {model, system?, messages, tools?}}, response:
{status_code, body}}]`` (one exchange per model call, each request re-sending the conversation);
a request body or ``{messages: [...]}``; a bare list of messages with content blocks; a single
response ``{type: "message", role: "assistant", content: [...]}``.

Content blocks become steps as described in :mod:`kb.importers.messages`: ``tool_use`` and
``server_tool_use`` are ``tool_call`` steps, ``tool_result`` (``is_error`` -> ``error``) and the
server results (``web_search_tool_result``, ``code_execution_tool_result``...) observation steps,
``thinking`` a thinking step. In a recording, each request adds only what it has beyond the
conversation so far; an error response (``{type: "error"}`` or a 4xx/5xx status) is an ``error``
step and makes the outcome ``failure``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kb.importers.base import MATCH, Check, Draft, Format, StepLog, build_experience, miss, rest
from kb.importers.messages import (
    Message,
    Part,
    Transcript,
    add_message,
    block_parts,
    is_server_result,
    role_of,
)
from kb.models import ExperienceCreate, Outcome

BLOCK_TYPES = {"tool_use", "tool_result", "server_tool_use", "thinking", "redacted_thinking"}
BLOCK_TYPES |= {"mcp_tool_use", "mcp_tool_result", "document", "search_result"}
BLOCK_TYPES |= {"container_upload"}


def _is_anthropic_block(block: Any) -> bool:
    if not isinstance(block, Mapping):
        return False
    kind = str(block.get("type", ""))
    if kind == "image" and isinstance(block.get("source"), Mapping):
        return True
    return kind in BLOCK_TYPES or is_server_result(kind)


def _has_blocks(messages: list[Any]) -> bool:
    return any(
        isinstance(m, Mapping)
        and isinstance(m.get("content"), list)
        and any(_is_anthropic_block(b) for b in m["content"])
        for m in messages
    )


def _is_message_list(messages: Any) -> bool:
    return (
        isinstance(messages, list)
        and bool(messages)
        and all(
            isinstance(m, Mapping)
            and m.get("role") in {"user", "assistant"}
            and isinstance(m.get("content"), str | list)
            for m in messages
        )
    )


def _is_exchange(item: Any) -> bool:
    if not isinstance(item, Mapping):
        return False
    request, response = item.get("request"), item.get("response")
    body = request.get("body") if isinstance(request, Mapping) else None
    return (
        isinstance(body, Mapping)
        and isinstance(body.get("messages"), list)
        and isinstance(response, Mapping)
    )


def _is_response(item: Any) -> bool:
    return (
        isinstance(item, Mapping)
        and item.get("type") == "message"
        and item.get("role") == "assistant"
        and isinstance(item.get("content"), list)
    )


def check(record: Any) -> Check:
    if isinstance(record, list):
        if record and all(_is_exchange(e) for e in record):
            return MATCH
        if record and any(isinstance(e, Mapping) and "request" in e for e in record):
            return miss("each exchange needs request.body.messages and a response", 0.6)
        if _is_message_list(record):
            if _has_blocks(record):
                return MATCH
            return miss("no Anthropic content block (tool_use, tool_result, thinking...)", 0.4)
        return miss("a list of exchanges or of messages with content blocks")
    if not isinstance(record, Mapping):
        return miss("an exchange list, a request body or a message list")
    if _is_exchange(record) or _is_response(record):
        return MATCH
    messages = record.get("messages")
    if isinstance(messages, list) and _is_message_list(messages):
        if _has_blocks(messages) or "system" in record or _has_input_schema(record):
            return MATCH
        return miss("no Anthropic content block, top-level system or input_schema tool", 0.4)
    if "request" in record or "messages" in record:
        return miss("messages must be {role: user|assistant, content} objects", 0.3)
    return miss("no messages, request/response or message object")


def _has_input_schema(body: Mapping[str, Any]) -> bool:
    tools = body.get("tools")
    return isinstance(tools, list) and any(
        isinstance(t, Mapping) and "input_schema" in t for t in tools
    )


def _message(raw: Mapping[str, Any], *, agent: str | None = None) -> Message:
    content = raw.get("content")
    blocks = content if isinstance(content, list) else [content]
    parts: list[Part] = []
    for block in blocks:
        parts += block_parts(block)
    # The API splits one text into blocks at citation boundaries: join them as one text.
    cited = isinstance(content, list) and any(
        isinstance(b, Mapping) and b.get("citations") for b in content
    )
    role = role_of(raw.get("role"))
    return Message(
        role=role,
        parts=parts,
        agent=agent if role == "assistant" else None,
        extra=rest(raw, {"role", "content", "type"}),
        join="" if cited else "\n",
    )


def _system(system: Any) -> Message | None:
    if not system:
        return None
    blocks = system if isinstance(system, list) else [system]
    parts = [p for b in blocks for p in block_parts(b)]
    return Message(role="system", parts=parts)


def _request_messages(body: Mapping[str, Any], agent: str | None) -> list[Message]:
    system = _system(body.get("system"))
    messages = [
        _message(m, agent=agent) for m in body.get("messages") or [] if isinstance(m, Mapping)
    ]
    return ([system] if system else []) + messages


def _error_text(status: Any, body: Any) -> str:
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        kind, text = error.get("type"), error.get("message")
        return f"{status} {kind}: {text}" if status else f"{kind}: {text}"
    return f"HTTP {status}: {body}"


def convert(record: Any, *, source: str, domain: str | None = None) -> ExperienceCreate:
    log = StepLog()
    artifacts: dict[str, Any] = {}
    outcome = Outcome.unknown
    model: str | None = None
    source_id: str | None = None
    if isinstance(record, Mapping) and _is_exchange(record):
        record = [record]
    if isinstance(record, list) and record and all(_is_exchange(e) for e in record):
        transcript = Transcript(log)
        exchanges: list[dict[str, Any]] = []
        for exchange in record:
            request, response = exchange["request"], exchange["response"]
            body = request["body"]
            model = model or body.get("model")
            transcript.send(_request_messages(body, body.get("model")))
            reply = response.get("body")
            status = response.get("status_code", response.get("status"))
            failed = (isinstance(status, int) and status >= 400) or (
                isinstance(reply, Mapping) and reply.get("type") == "error"
            )
            if failed:
                log.add(
                    Draft(
                        kind="error", role="system", agent="api", error=_error_text(status, reply)
                    )
                )
                outcome = Outcome.failure
            elif _is_response(reply):
                source_id = source_id or reply.get("id")
                message = _message(reply, agent=reply.get("model") or model)
                message.extra = {}  # the reply's id, usage and stop reason stay in "exchanges"
                transcript.reply(message)
                outcome = Outcome.unknown
            request_rest = rest(request, {"body"})
            request_rest["body"] = rest(body, {"messages", "system"})
            response_rest = rest(response, {"body"})
            response_rest["body"] = (
                rest(reply, {"content", "role"}) if isinstance(reply, Mapping) else reply
            )
            exchanges.append({"request": request_rest, "response": response_rest})
        artifacts["exchanges"] = exchanges
    elif _is_response(record):
        add_message(log, _message(record, agent=record.get("model")))
        model = record.get("model")
        source_id = record.get("id")
        artifacts.update(rest(record, {"content", "role", "type"}))
    else:
        payload: Mapping[str, Any] = record if isinstance(record, Mapping) else {"messages": record}
        if not isinstance(payload.get("messages"), list) or not payload["messages"]:
            raise ValueError("messages: expected a non-empty list of {role, content} messages")
        model = payload.get("model")
        for index, raw in enumerate(payload["messages"]):
            if not isinstance(raw, Mapping):
                raise ValueError(f"messages[{index}]: expected an object")
        for message in _request_messages(payload, model):
            add_message(log, message)
        artifacts.update(rest(payload, {"messages", "system"}))
    return build_experience(
        log,
        task=log.first_user_text(),
        source=source,
        domain=domain,
        source_id=source_id,
        artifacts=artifacts,
        agent=model,
        outcome=outcome,
        final_answer=log.final_text(),
    )


FORMAT = Format(
    name="anthropic",
    summary="Anthropic Messages: HTTP recordings, request bodies, message lists with blocks",
    check=check,
    convert=convert,
)
