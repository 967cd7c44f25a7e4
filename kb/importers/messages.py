"""Chat messages of every vendor as one internal shape, and how a message becomes steps.

A message is a role and a list of :class:`Part` (text, a tool call, a tool result, thinking, an
attachment). :func:`block_parts` knows the content blocks of Anthropic (``tool_use``,
``tool_result``, ``server_tool_use``, ``*_tool_result``, ``thinking``), OpenAI chat and Responses
(``text``/``input_text``/``output_text``, ``refusal``, ``image_url``), the OpenTelemetry GenAI
parts (``tool_call``, ``tool_call_response``, ``reasoning``) and the Vercel AI SDK
(``tool-call``, ``tool-result``); :func:`message_of` reads a message dict of any of those shapes
(OpenAI ``tool_calls``, OpenInference ``contents``/``tool_calls.N.tool_call``, OTel ``parts``).

:func:`add_message` turns one message into steps: text followed by a tool call is one
``tool_call`` step (the text is its content), every further call is a step of its own, every
result an ``observation`` (or ``error``) step of role ``tool``, thinking a ``thinking`` step.
:class:`Transcript` emits a conversation that is re-sent whole with each model call (an HTTP
recording, LLM spans, LLM runs) once: only what is new since the previous call becomes steps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kb.importers.base import Draft, StepLog, as_args, as_text, is_empty, parse_json, rest

ROLES = {
    "human": "user",
    "ai": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "function": "tool",
    "tool-call": "assistant",
    "tool_call": "assistant",
    "tool-response": "tool",
    "tool_response": "tool",
    "ipython": "tool",
}
TEXT_TYPES = {"text", "input_text", "output_text"}
ATTACHMENT_TYPES = {
    "image",
    "image_url",
    "input_image",
    "input_audio",
    "input_file",
    "audio",
    "document",
    "file",
    "blob",
    "uri",
    "container_upload",
    "search_result",
}
CALL_TYPES = {"tool_use", "server_tool_use", "mcp_tool_use", "tool_call", "tool-call"}
RESULT_TYPES = {"tool_result", "mcp_tool_result", "tool_call_response", "tool-result"}
THINKING_TYPES = {"thinking", "redacted_thinking", "reasoning"}
MESSAGE_KEYS = {
    "role",
    "content",
    "parts",
    "contents",
    "tool_calls",
    "function_call",
    "tool_call_id",
    "name",
}


def role_of(value: Any) -> str:
    role = str(value or "unknown").lower()
    return ROLES.get(role, role)


def is_server_result(kind: str) -> bool:
    """Anthropic server tool results: ``web_search_tool_result``, ``code_execution_tool_result``..."""
    return kind.endswith("_tool_result") and kind not in RESULT_TYPES


@dataclass
class Part:
    """One piece of a message: ``text``, ``call``, ``result``, ``thinking``, ``attachment``,
    ``other``."""

    kind: str
    text: str | None = None
    tool: str | None = None
    args: dict[str, Any] | None = None
    call_id: str | None = None
    result: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Message:
    role: str
    parts: list[Part]
    agent: str | None = None
    timestamp: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    join: str = "\n"

    def signature(self) -> str:
        """What a re-sent copy of this message has in common with it (ids, text, tools)."""
        return json.dumps(
            [
                self.role,
                [
                    [p.kind, (p.text or "").strip(), p.tool, p.call_id, (p.result or "").strip()]
                    for p in self.parts
                ],
            ],
            ensure_ascii=False,
        )


# -- reading -------------------------------------------------------------------------------------
def call_part(raw: Any) -> Part:
    """A tool call in the OpenAI (``function``), LangChain (``args``), OpenInference
    (``tool_call``) or Vercel (``toolName``) shape."""
    if not isinstance(raw, Mapping):
        return Part("call", tool=None, args={"_value": raw})
    if isinstance(raw.get("tool_call"), Mapping):
        raw = raw["tool_call"]
    function = raw.get("function") if isinstance(raw.get("function"), Mapping) else None
    source = function or raw
    args = source.get("arguments", raw.get("args", raw.get("input")))
    mapped = {"id", "call_id", "toolCallId", "function", "name", "toolName", "arguments", "args"}
    mapped |= {"input", "index"}
    extra = rest(raw, mapped)
    if extra.get("type") in {"function", "tool_call", "tool-call", "tool_use"}:
        extra.pop("type")
    return Part(
        "call",
        tool=source.get("name") or raw.get("toolName"),
        args=as_args(parse_json(args)) if args is not None else {},
        call_id=raw.get("id") or raw.get("call_id") or raw.get("toolCallId"),
        extra=extra,
    )


def result_text(content: Any) -> tuple[str | None, list[Any]]:
    """The text of a tool result's content, and the non-text blocks it held (kept as extras)."""
    if content is None or isinstance(content, str):
        return content, []
    if isinstance(content, list):
        texts: list[str] = []
        others: list[Any] = []
        for block in content:
            if isinstance(block, str):
                texts.append(block)
            elif isinstance(block, Mapping) and block.get("type", "text") in TEXT_TYPES:
                texts.append(str(block.get("text", block.get("content", ""))))
            else:
                kind = block.get("type") if isinstance(block, Mapping) else None
                texts.append(f"[{kind or 'data'}]")
                others.append(block)
        return "\n".join(texts), others
    return as_text(content), []


def _server_result(block: Mapping[str, Any], kind: str) -> Part:
    """An Anthropic server tool's result block (web search, code execution, web fetch...)."""
    content = block.get("content")
    error: str | None = None
    text: str | None
    if isinstance(content, Mapping) and str(content.get("type", "")).endswith("_error"):
        error = str(content.get("error_code") or as_text(content))
        text = None
    elif isinstance(content, Mapping) and ("stdout" in content or "return_code" in content):
        text = str(content.get("stdout") or "")
        code = content.get("return_code")
        if code not in (0, None):
            error = str(content.get("stderr") or f"return code {code}")
    elif isinstance(content, list) and all(
        isinstance(r, Mapping) and ("url" in r or "title" in r) for r in content
    ):
        text = "\n".join(f"{r.get('title', '')} <{r.get('url', '')}>".strip() for r in content)
    else:
        text, _ = result_text(content)
    extra = rest(block, {"tool_use_id", "content"})
    if not isinstance(content, str) and not is_empty(content):
        extra["content"] = content
    return Part("result", call_id=block.get("tool_use_id"), result=text, error=error, extra=extra)


def block_parts(block: Any) -> list[Part]:
    """The parts of one content block (see the module docstring for the vendors covered)."""
    if isinstance(block, str):
        return [Part("text", text=block)]
    if not isinstance(block, Mapping):
        return [Part("text", text=as_text(block))]
    kind = str(block.get("type") or ("text" if "text" in block else "other"))
    if kind == "message_content" or (kind == "other" and "message_content" in block):
        return block_parts(block.get("message_content", {}))
    if kind in TEXT_TYPES:
        text = block.get("text", block.get("content"))
        return [Part("text", text=as_text(text), extra=rest(block, {"type", "text", "content"}))]
    if kind == "refusal":
        return [Part("text", text=as_text(block.get("refusal")), extra={"refusal": True})]
    if kind in CALL_TYPES:
        part = call_part(block)
        if kind in {"server_tool_use", "mcp_tool_use"}:
            part.extra["type"] = kind
        return [part]
    if kind in RESULT_TYPES:
        return [_result_block(block, kind)]
    if is_server_result(kind):
        return [_server_result(block, kind)]
    if kind in THINKING_TYPES:
        text = block.get("thinking", block.get("text", block.get("content")))
        extra = rest(block, {"type", "thinking", "text", "content"})
        if kind == "redacted_thinking":
            extra["redacted"] = True
        return [Part("thinking", text=as_text(text), extra=extra)]
    if kind in ATTACHMENT_TYPES:
        return [Part("attachment", text=f"[{kind}]", extra={"attachment": dict(block)})]
    return [Part("other", text=as_text(block.get("text")), extra={"type": kind, "block": block})]


def _result_block(block: Mapping[str, Any], kind: str) -> Part:
    if kind == "tool_call_response":  # OTel GenAI part
        return Part(
            "result",
            call_id=block.get("id"),
            result=as_text(block.get("response")),
            extra=rest(block, {"type", "id", "response"}),
        )
    if kind == "tool-result":  # Vercel AI SDK
        output = block.get("output", block.get("result"))
        error = None
        if isinstance(output, Mapping) and {"type", "value"} <= set(output):
            failed = str(output["type"]).startswith("error")
            output = output["value"]
            error = as_text(output) if failed else None
        if block.get("isError"):
            error = as_text(output)
        return Part(
            "result",
            tool=block.get("toolName"),
            call_id=block.get("toolCallId"),
            result=None if error else as_text(output),
            error=error,
            extra=rest(block, {"type", "toolCallId", "toolName", "output", "result", "isError"}),
        )
    text, others = result_text(block.get("content"))
    extra = rest(block, {"type", "tool_use_id", "content", "is_error"})
    if others:
        extra["content_blocks"] = others
    failed = bool(block.get("is_error"))
    return Part(
        "result",
        call_id=block.get("tool_use_id"),
        result=None if failed else text,
        error=(text or "tool error") if failed else None,
        extra=extra,
    )


def message_of(raw: Mapping[str, Any], *, agent: str | None = None) -> Message:
    """A message dict of any supported vendor as a :class:`Message` (unmapped keys as extras)."""
    role = role_of(raw.get("role"))
    parts: list[Part] = []
    for block in raw.get("parts") or []:  # OTel GenAI
        parts += block_parts(block)
    content = raw.get("content")
    if isinstance(content, str) and role != "tool":
        parsed = parse_json(content)  # a dump's stringified list of content parts
        if isinstance(parsed, list) and all(isinstance(p, Mapping) and "type" in p for p in parsed):
            content = parsed
    if isinstance(content, list):
        for block in content:
            parts += block_parts(block)
    elif content is not None:
        parts.append(Part("text", text=as_text(content)))
    for block in raw.get("contents") or []:  # OpenInference
        parts += block_parts(block)
    calls = parse_json(raw.get("tool_calls"))
    for call in calls if isinstance(calls, list) else []:
        parts.append(call_part(call))
    if isinstance(raw.get("function_call"), Mapping):
        parts.append(call_part(raw["function_call"]))
    name = raw.get("name")
    if role == "tool" and not any(p.kind == "result" for p in parts):
        texts = [p.text for p in parts if p.kind in {"text", "attachment"} and p.text is not None]
        parts = [
            Part(
                "result",
                tool=name,
                call_id=raw.get("tool_call_id"),
                result="\n".join(texts) if texts else None,
            )
        ]
    elif role == "tool":
        for part in parts:
            if part.kind == "result":
                part.call_id = part.call_id or raw.get("tool_call_id")
                part.tool = part.tool or name
    mapped = MESSAGE_KEYS | {"type"} if raw.get("type") == "message" else MESSAGE_KEYS
    extra = rest(raw, mapped)
    return Message(
        role=role,
        parts=parts,
        agent=(name if role != "tool" and isinstance(name, str) else None) or agent,
        extra=extra,
    )


# -- writing -------------------------------------------------------------------------------------
def add_message(log: StepLog, message: Message, *, dedupe: bool = False) -> None:
    """Add one message's steps to ``log`` (see the module docstring). With ``dedupe``, calls and
    results whose id the log already holds are skipped (a conversation re-sent with each call)."""
    role, agent, stamp = message.role, message.agent or message.role, message.timestamp
    texts: list[str] = []
    text_extras: list[dict[str, Any]] = []
    attachments: list[Any] = []
    emitted: list[Draft] = []

    def pending_extra() -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if text_extras:
            extra["text_parts"] = list(text_extras)
        if attachments:
            extra["attachments"] = list(attachments)
        return extra

    def clear() -> None:
        texts.clear()
        text_extras.clear()
        attachments.clear()

    def flush() -> None:
        if texts or text_extras or attachments:
            content = message.join.join(texts) or None
            draft = Draft(role=role, agent=agent, content=content, timestamp=stamp)
            draft.extra = pending_extra()
            emitted.append(log.add(draft))
            clear()

    for part in message.parts:
        if part.kind in {"text", "attachment"}:
            if part.text:
                texts.append(part.text)
            if part.kind == "attachment":
                attachments.append(part.extra.get("attachment"))
            elif part.extra:
                text_extras.append(part.extra)
        elif part.kind == "call":
            if dedupe and log.called(part.call_id):
                continue
            draft = Draft(
                kind="tool_call",
                role=role,
                agent=agent,
                content=message.join.join(texts) or None,
                tool=part.tool,
                args=part.args,
                timestamp=stamp,
                extra={**part.extra, **pending_extra()},
            )
            clear()
            emitted.append(log.call(draft, part.call_id))
        elif part.kind == "result":
            if dedupe and log.answered(part.call_id):
                continue
            flush()
            draft = Draft(
                role="tool",
                agent="tool",
                tool=part.tool,
                result=part.result,
                error=part.error,
                timestamp=stamp,
                extra=dict(part.extra),
            )
            emitted.append(log.result(draft, part.call_id))
        else:
            flush()
            extra = dict(part.extra)
            kind = "thinking" if part.kind == "thinking" else str(extra.get("type") or "other")
            draft = Draft(
                kind=kind if len(kind) <= 50 else "other",
                role=role,
                agent=agent,
                content=part.text,
                timestamp=stamp,
                extra=extra,
            )
            emitted.append(log.add(draft))
    flush()
    if not emitted and (message.extra or not message.parts):
        emitted.append(log.add(Draft(role=role, agent=agent, timestamp=stamp)))
    if emitted and message.extra:
        emitted[0].extra = {**message.extra, **emitted[0].extra}


class Transcript:
    """A conversation that each model call re-sends whole: emit only what is new each time."""

    def __init__(self, log: StepLog) -> None:
        self.log = log
        self.seen: list[str] = []

    def send(self, messages: list[Message]) -> None:
        """The messages of one request: the part that repeats what was already seen is skipped."""
        signatures = [m.signature() for m in messages]
        common = 0
        while (
            common < min(len(signatures), len(self.seen))
            and signatures[common] == self.seen[common]
        ):
            common += 1
        for message in messages[common:]:
            add_message(self.log, message, dedupe=True)
        self.seen = signatures

    def reply(self, message: Message) -> None:
        """The model's reply to the last request."""
        add_message(self.log, message, dedupe=True)
        self.seen.append(message.signature())
