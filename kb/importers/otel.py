"""OpenTelemetry spans of LLM agents: GenAI semantic conventions, OpenInference, Vercel AI SDK.

Shapes: a flat attribute map (one span's attributes, no envelope); one exported span or a list of
them (``{name, spanContext|context|traceId, parentSpanId|parent_id, attributes, status, events,
startTime}``, JS and Python SDK exporters); OTLP JSON ``{resourceSpans: [{resource, scopeSpans:
[{spans}]}]}`` (attributes as ``[{key, value: {stringValue|intValue|...}}]``). A file's spans are
grouped by trace id: one experience per trace.

The spans of a trace form a tree (``parentSpanId``), walked depth first in start-time order:

* LLM spans (``gen_ai.operation.name`` chat / text_completion / generate_content,
  ``openinference.span.kind`` LLM, Vercel ``ai.generateText(.doGenerate)``...) give message steps
  from their input and output messages (``gen_ai.input.messages``/``gen_ai.output.messages``,
  the deprecated ``gen_ai.prompt``/``gen_ai.completion`` and their indexed ``.N.`` forms,
  ``llm.input_messages.N.message.*``, ``ai.prompt.messages``/``ai.response.text``...). Each call
  re-sends the conversation; only what is new becomes steps.
* Tool spans (``execute_tool``, OpenInference TOOL/RETRIEVER..., ``ai.toolCall``) give the tool's
  observation (and its call when no model output named it): ``gen_ai.tool.name``,
  ``gen_ai.tool.call.id``, ``gen_ai.tool.call.arguments``/``.result``, ``input.value``/
  ``output.value``.
* Agent and chain spans only give steps when nothing below them does (their input and output).
* A span with status ERROR adds an ``error`` step; an errored root makes the outcome ``failure``.

Every span's envelope and the attributes that were not mapped are kept in ``artifacts["spans"]``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
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
    is_empty,
    miss,
    parse_json,
    rest,
    seconds_between,
    to_datetime,
)
from kb.importers.messages import Message, Part, Transcript, call_part, message_of
from kb.models import ExperienceCreate, Outcome

MARKERS = ("gen_ai.", "llm.", "ai.", "openinference.", "tool_call.", "tool.")
VERCEL_LLM = {
    f"ai.{op}{suffix}"
    for op in ("generateText", "streamText", "generateObject", "streamObject")
    for suffix in ("", ".doGenerate", ".doStream")
}
LLM_OPERATIONS = {"chat", "text_completion", "generate_content", "responses"}
TOOL_KINDS = {"TOOL", "RETRIEVER", "RERANKER", "GUARDRAIL", "EVALUATOR"}
ERROR_CODES = {2, "2", "ERROR", "STATUS_CODE_ERROR"}
ENVELOPE = {
    "name",
    "spanContext",
    "context",
    "traceId",
    "trace_id",
    "spanId",
    "span_id",
    "parentSpanId",
    "parent_span_id",
    "parentId",
    "parent_id",
    "parentSpanContext",
    "attributes",
    "status",
    "events",
    "resource",
    "startTime",
    "start_time",
    "startTimeUnixNano",
    "endTime",
    "end_time",
    "endTimeUnixNano",
}


# -- reading spans -------------------------------------------------------------------------------
def _any_value(value: Any) -> Any:
    """An OTLP/JSON ``AnyValue`` (``{"stringValue": ...}``) as a plain value."""
    if not isinstance(value, Mapping):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [_any_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return _attributes((value["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None if not value else dict(value)


def _attributes(raw: Any) -> dict[str, Any]:
    if isinstance(raw, Mapping):
        return dict(raw)
    if isinstance(raw, list):
        return {
            str(kv.get("key")): _any_value(kv.get("value"))
            for kv in raw
            if isinstance(kv, Mapping) and "key" in kv
        }
    return {}


def _hex(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value.removeprefix("0x").lower()


def _first(raw: Mapping[str, Any], *keys: str) -> Any:
    return next((raw[k] for k in keys if raw.get(k) not in (None, "")), None)


@dataclass
class Span:
    name: str
    trace_id: str | None
    span_id: str | None
    parent_id: str | None
    start: Any
    end: Any
    attrs: dict[str, Any]
    status: Any
    error: str | None
    events: list[dict[str, Any]]
    resource: dict[str, Any]
    other: dict[str, Any]
    used: set[str] = field(default_factory=set)

    def get(self, *keys: str) -> Any:
        """The first attribute of ``keys`` that is set (marked as mapped)."""
        for key in keys:
            if not is_empty(self.attrs.get(key)):
                self.used.add(key)
                return self.attrs[key]
        return None

    def has_prefix(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.attrs)

    def take(self, prefix: str) -> Any:
        """The attributes under ``prefix`` (``llm.input_messages.0.message.role``...) as a tree,
        numbered levels as lists."""
        tree: dict[str, Any] = {}
        for key, value in self.attrs.items():
            if not key.startswith(prefix):
                continue
            self.used.add(key)
            *path, leaf = key[len(prefix) :].split(".")
            node = tree
            for name in path:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = node[name] = {}
                node = child
            node[leaf] = value
        return _listify(tree)

    def to_dict(self) -> dict[str, Any]:
        """The span in the exported-span shape this module reads (used when regrouping)."""
        data: dict[str, Any] = {
            "name": self.name,
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "parentSpanId": self.parent_id,
            "startTime": self.start,
            "endTime": self.end,
            "attributes": self.attrs,
            "status": self.status,
            "events": self.events,
            "resource": {"attributes": self.resource} if self.resource else None,
            **self.other,
        }
        return {k: v for k, v in data.items() if v is not None}


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    items = {k: _listify(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items):
        return [items[k] for k in sorted(items, key=int)]
    return items


def _span(raw: Mapping[str, Any], resource: Mapping[str, Any] | None = None) -> Span:
    context = _first(raw, "spanContext", "context") or {}
    parent_context = raw.get("parentSpanContext") or raw.get("parent") or {}
    status = raw.get("status")
    code = status.get("code", status.get("status_code")) if isinstance(status, Mapping) else None
    message = _first(status, "message", "description") if isinstance(status, Mapping) else None
    events = []
    for event in raw.get("events") or []:
        if isinstance(event, Mapping):
            item = dict(event)
            item["attributes"] = _attributes(event.get("attributes"))
            events.append(item)
    error: str | None = None
    if code in ERROR_CODES:
        exception: dict[str, Any] = next(
            (e["attributes"] for e in events if e.get("name") == "exception"), {}
        )
        error = str(
            message
            or ": ".join(
                str(exception[k]) for k in ("exception.type", "exception.message") if k in exception
            )
            or "error"
        )
    own_resource = raw.get("resource")
    merged = dict(resource or {})
    if isinstance(own_resource, Mapping):
        merged.update(_attributes(own_resource.get("attributes", own_resource)))
    return Span(
        name=str(raw.get("name") or ""),
        trace_id=_hex(_first(raw, "traceId", "trace_id") or _first(context, "traceId", "trace_id")),
        span_id=_hex(_first(raw, "spanId", "span_id") or _first(context, "spanId", "span_id")),
        parent_id=_hex(
            _first(raw, "parentSpanId", "parent_span_id", "parentId", "parent_id")
            or (
                _first(parent_context, "spanId", "span_id")
                if isinstance(parent_context, Mapping)
                else None
            )
        ),
        start=_first(raw, "startTimeUnixNano", "startTime", "start_time"),
        end=_first(raw, "endTimeUnixNano", "endTime", "end_time"),
        attrs=_attributes(raw.get("attributes")),
        status=status,
        error=error,
        events=events,
        resource=merged,
        other=rest(raw, ENVELOPE | {"parent"}),
    )


def _is_flat(record: Any) -> bool:
    return (
        isinstance(record, Mapping)
        and bool(record)
        and "attributes" not in record
        and all(isinstance(k, str) for k in record)
        and not any(isinstance(v, Mapping) for v in record.values())
        and any(
            k.startswith("gen_ai.") or k in {"openinference.span.kind", "ai.operationId"}
            for k in record
        )
    )


def _is_span(record: Any) -> bool:
    return (
        isinstance(record, Mapping)
        and isinstance(record.get("attributes"), Mapping | list)
        and isinstance(record.get("name"), str)
        and any(k in record for k in ("spanContext", "context", "traceId", "trace_id", "spanId"))
    )


def _is_otlp(record: Any) -> bool:
    return isinstance(record, Mapping) and isinstance(record.get("resourceSpans"), list)


def spans_of(record: Any) -> list[Span]:
    """The spans of any supported shape (see the module docstring)."""
    if _is_otlp(record):
        spans: list[Span] = []
        for block in record["resourceSpans"]:
            resource = _attributes((block.get("resource") or {}).get("attributes"))
            scopes = block.get("scopeSpans") or block.get("instrumentationLibrarySpans") or []
            for scope in scopes:
                name = (scope.get("scope") or scope.get("instrumentationLibrary") or {}).get("name")
                for raw in scope.get("spans") or []:
                    span = _span(raw, resource)
                    if name:
                        span.other.setdefault("scope", name)
                    spans.append(span)
        return spans
    if _is_flat(record):
        attrs = dict(record)
        return [
            Span(
                name=_flat_name(attrs),
                trace_id=None,
                span_id=None,
                parent_id=None,
                start=None,
                end=None,
                attrs=attrs,
                status=None,
                error=None,
                events=[],
                resource={},
                other={},
            )
        ]
    if _is_span(record):
        return [_span(record)]
    if isinstance(record, list):
        return [_span(r) for r in record if _is_span(r)]
    return []


def _flat_name(attrs: Mapping[str, Any]) -> str:
    """The span name the GenAI conventions give: ``{operation} {model or tool}``."""
    operation = attrs.get("gen_ai.operation.name") or attrs.get("openinference.span.kind") or "span"
    target = attrs.get("gen_ai.tool.name") or attrs.get("gen_ai.request.model")
    target = target or attrs.get("llm.model_name") or attrs.get("tool.name") or ""
    return f"{operation} {target}".strip()


def _has_markers(spans: list[Span]) -> bool:
    return any(k.startswith(MARKERS) for s in spans for k in s.attrs)


def check(record: Any) -> Check:
    if _is_flat(record):
        return MATCH
    if (
        _is_otlp(record)
        or _is_span(record)
        or (isinstance(record, list) and record and all(_is_span(r) for r in record))
    ):
        spans = spans_of(record)
    elif isinstance(record, list) and any(_is_span(r) for r in record):
        return miss("some list items are not spans (name, ids, attributes)", 0.5)
    elif isinstance(record, Mapping) and "attributes" in record:
        return miss("a span needs a name and a trace/span id next to its attributes", 0.6)
    else:
        return miss("no span (attributes), span list, resourceSpans or GenAI attribute map")
    if not spans:
        return miss("resourceSpans holds no span", 0.6)
    if not _has_markers(spans):
        return miss("no GenAI, OpenInference or Vercel AI attributes on the spans", 0.7)
    return MATCH


def regroup(records: list[Any]) -> list[Any]:
    """One record per trace: spans of all records grouped by trace id (maps stay as they are)."""
    out: list[Any] = []
    traces: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if _is_flat(record):
            out.append(record)
            continue
        for span in spans_of(record):
            traces.setdefault(span.trace_id or "", []).append(span.to_dict())
    return out + list(traces.values())


# -- spans to steps ------------------------------------------------------------------------------
def _kind(span: Span) -> str:
    attrs = span.attrs
    operation = attrs.get("gen_ai.operation.name")
    oi_kind = str(attrs.get("openinference.span.kind") or "").upper()
    vercel = str(attrs.get("ai.operationId") or "")
    if operation == "execute_tool" or oi_kind in TOOL_KINDS or vercel == "ai.toolCall":
        return "tool"
    if operation == "embeddings" or oi_kind == "EMBEDDING" or vercel.startswith("ai.embed"):
        return "embedding"
    if operation in LLM_OPERATIONS or oi_kind == "LLM" or vercel in VERCEL_LLM:
        return "llm"
    if operation in {"invoke_agent", "create_agent"} or oi_kind == "AGENT":
        return "agent"
    if oi_kind or vercel or operation:
        return "chain"
    return "other"


def _messages(value: Any, role: str) -> list[Message]:
    """Messages from a parsed attribute: a list of messages, a prompt string, ``{messages}``..."""
    value = parse_json(value)
    if isinstance(value, str):
        return [Message(role=role, parts=[Part("text", text=value)])]
    if isinstance(value, Mapping):
        if isinstance(value.get("messages"), list):
            return _messages(value["messages"], role)
        if isinstance(value.get("message"), Mapping):
            return _messages([value["message"]], role)
        choices = value.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
            return _messages([choices[0].get("message") or {}], role)
        text = _first(value, "text", "content", "output", "input", "prompt", "query", "question")
        if text is not None:
            message = Message(role=role, parts=[Part("text", text=as_text(text))])
            message.extra = rest(value, {"text", "content", "output", "input", "prompt", "query"})
            return [message]
        return [Message(role=role, parts=[Part("text", text=as_text(value))])]
    if isinstance(value, list):
        out = []
        for item in map(parse_json, value):
            if isinstance(item, Mapping) and isinstance(item.get("message"), Mapping):
                item = item["message"]
            if isinstance(item, Mapping):
                out.append(message_of({**item, "role": item.get("role") or role}))
            elif item is not None:
                out.append(Message(role=role, parts=[Part("text", text=as_text(item))]))
        return out
    return []


def _input(span: Span) -> list[Message]:
    system = span.get("gen_ai.system_instructions")
    head = _messages(system, "system") if system is not None else []
    for key in ("gen_ai.input.messages", "gen_ai.prompt"):
        value = span.get(key)
        if value is not None:
            return head + _messages(value, "user")
    for prefix in ("gen_ai.prompt.", "llm.input_messages."):
        if span.has_prefix(prefix):
            return head + _messages(span.take(prefix), "user")
    value = span.get("ai.prompt.messages")
    if value is not None:
        return _messages(value, "user")
    prompt = parse_json(span.get("ai.prompt"))
    if isinstance(prompt, Mapping):
        out = _messages(prompt["system"], "system") if prompt.get("system") else []
        if prompt.get("messages"):
            return out + _messages(prompt["messages"], "user")
        return out + _messages(prompt.get("prompt"), "user")
    if prompt is not None:
        return _messages(prompt, "user")
    values = span.get("ai.value", "ai.values")  # JSON.stringify'd embedding inputs
    if values is not None:
        texts = [_unquote(v) for v in (values if isinstance(values, list) else [values])]
        return [Message(role="user", parts=[Part("text", text="\n".join(texts))])]
    value = span.get("input.value", "input")
    return head + (_messages(value, "user") if value is not None else [])


def _unquote(value: Any) -> str:
    if isinstance(value, str) and value.startswith('"'):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        return decoded if isinstance(decoded, str) else value
    return str(as_text(value))


def _output(span: Span) -> list[Message]:
    for key in ("gen_ai.output.messages", "gen_ai.completion"):
        value = span.get(key)
        if value is not None:
            return _messages(value, "assistant")
    for prefix in ("gen_ai.completion.", "llm.output_messages."):
        if span.has_prefix(prefix):
            return _messages(span.take(prefix), "assistant")
    text = span.get("ai.response.text", "ai.response.object")
    calls = parse_json(span.get("ai.response.toolCalls"))
    if text is not None or calls:
        parts = [Part("text", text=as_text(text))] if text is not None else []
        parts += [call_part(c) for c in calls or [] if isinstance(c, Mapping)]
        return [Message(role="assistant", parts=parts)]
    value = span.get("output.value", "output")
    return _messages(value, "assistant") if value is not None else []


@dataclass
class _Walk:
    spans: list[Span]
    log: StepLog = field(default_factory=StepLog)
    children: dict[str | None, list[Span]] = field(default_factory=lambda: defaultdict(list))
    roots: list[Span] = field(default_factory=list)

    def __post_init__(self) -> None:
        ids = {s.span_id for s in self.spans if s.span_id}
        order = {id(s): n for n, s in enumerate(self.spans)}

        def when(span: Span) -> tuple[float, int]:
            stamp = to_datetime(span.start)
            return (stamp.timestamp() if stamp else float("inf"), order[id(span)])

        for span in sorted(self.spans, key=when):
            if span.parent_id and span.parent_id in ids and span.parent_id != span.span_id:
                self.children[span.parent_id].append(span)
            else:
                self.roots.append(span)
        self.transcript = Transcript(self.log)

    def below(self, span: Span) -> Iterator[Span]:
        for child in self.children.get(span.span_id, []) if span.span_id else []:
            yield child
            yield from self.below(child)

    def run(self) -> None:
        for root in self.roots:
            self.visit(root, None)

    def visit(self, span: Span, agent: str | None) -> None:
        kind = _kind(span)
        below = {_kind(s) for s in self.below(span)}
        if kind == "agent":
            name = span.get("gen_ai.agent.name", "agent.name")
            agent = str(name or span.name.removeprefix("invoke_agent").strip() or agent or "agent")
        handled = True
        if kind == "tool":
            self.tool(span, agent)
        elif kind in {"llm", "embedding"} and kind not in below:
            self.llm(span, agent, embedding=kind == "embedding")
        elif kind in {"agent", "chain"} and not below & {"llm", "tool", "embedding"}:
            self.llm(span, agent, embedding=False)
        else:
            handled = False
        for child in self.children.get(span.span_id, []) if span.span_id else []:
            self.visit(child, agent)
        if span.error and not handled:
            self.log.add(
                Draft(
                    kind="error",
                    role="assistant",
                    agent=agent,
                    error=span.error,
                    timestamp=span.end,
                )
            )

    def llm(self, span: Span, agent: str | None, *, embedding: bool) -> None:
        model = span.get("gen_ai.response.model", "gen_ai.request.model", "llm.model_name")
        model = model or span.get("ai.response.model", "ai.model.id")
        actor = agent or (str(model) if model else "assistant")
        messages = _input(span)
        for message in messages:
            message.timestamp = span.start
            if message.role == "assistant":
                message.agent = message.agent or actor
        self.transcript.send(messages)
        before = len(self.log)
        if embedding:
            self.log.add(Draft(kind="embedding", role="assistant", agent=actor, timestamp=span.end))
        else:
            for message in _output(span):
                message.agent = message.agent or actor
                message.timestamp = span.end
                self.transcript.reply(message)
        if len(self.log) > before:
            self.log.drafts[before].duration = seconds_between(span.start, span.end)
        if span.error:
            self.log.add(
                Draft(
                    kind="error",
                    role="assistant",
                    agent=actor,
                    error=span.error,
                    timestamp=span.end,
                )
            )

    def tool(self, span: Span, agent: str | None) -> None:
        name = span.get(
            "gen_ai.tool.name", "tool.name", "tool_call.function.name", "ai.toolCall.name"
        )
        tool = str(name or span.name.removeprefix("execute_tool").strip() or "tool")
        call_id = span.get("gen_ai.tool.call.id", "tool_call.id", "ai.toolCall.id")
        call_id = None if call_id is None else str(call_id)
        args = span.get(
            "gen_ai.tool.call.arguments",
            "tool_call.function.arguments",
            "ai.toolCall.args",
            "ai.toolCall.input",
            "input.value",
            "input",
        )
        result = span.get(
            "gen_ai.tool.call.result",
            "ai.toolCall.result",
            "ai.toolCall.output",
            "output.value",
            "output",
        )
        if not self.log.called(call_id):
            open_call = None if call_id else self.log.open_call(tool)
            if open_call is not None:
                call_id = open_call.link
            else:
                self.log.call(
                    Draft(
                        role="assistant",
                        agent=agent or "assistant",
                        tool=tool,
                        args=as_args(parse_json(args), key="input"),
                        timestamp=span.start,
                    ),
                    call_id,
                )
        if self.log.answered(call_id):
            return
        self.log.result(
            Draft(
                role="tool",
                agent="tool",
                tool=tool,
                result=as_text(result),
                error=span.error,
                timestamp=span.end,
                duration=seconds_between(span.start, span.end),
            ),
            call_id,
        )

    def artifacts(self) -> list[dict[str, Any]]:
        out = []
        for span in self.spans:
            item = {
                "name": span.name,
                "trace_id": span.trace_id,
                "span_id": span.span_id,
                "parent_id": span.parent_id,
                "start": span.start,
                "end": span.end,
                "status": span.status,
                "events": span.events,
                "attributes": {k: v for k, v in span.attrs.items() if k not in span.used},
                **span.other,
            }
            out.append({k: v for k, v in item.items() if not is_empty(v)})
        return out


def convert(record: Any, *, source: str, domain: str | None = None) -> ExperienceCreate:
    spans = spans_of(record)
    if not spans:
        raise ValueError("spans: no span found (attributes, span list or resourceSpans)")
    walk = _Walk(spans)
    walk.run()
    root = walk.roots[0]
    task = walk.log.first_user_text()
    if task is None and _kind(root) != "tool":
        opening = [m for m in _input(root) if m.role == "user"]
        task = next((p.text for m in opening for p in m.parts if p.text), None)
    task = task or root.name
    final = walk.log.final_text()
    if final is None and _kind(root) in {"agent", "chain"}:
        final = next((p.text for m in _output(root) for p in m.parts if p.text), None)
    agent = root.get("gen_ai.agent.name", "agent.name") or root.resource.get("service.name")
    agent = agent or root.get("gen_ai.request.model", "llm.model_name", "ai.model.id")
    resources = [s.resource for s in spans if s.resource]
    artifacts: dict[str, Any] = {"spans": walk.artifacts()}
    if resources:
        artifacts["resource"] = resources[0]
    return build_experience(
        walk.log,
        task=task,
        source=source,
        domain=domain,
        source_id=root.trace_id,
        artifacts=artifacts,
        agent=None if agent is None else str(agent),
        outcome=Outcome.failure if any(r.error for r in walk.roots) else Outcome.unknown,
        final_answer=final,
    )


FORMAT = Format(
    name="otel",
    summary="OpenTelemetry GenAI / OpenInference / Vercel AI spans: attribute maps, span lists, OTLP",
    check=check,
    convert=convert,
    regroup=regroup,
)

__all__ = ["FORMAT", "Span", "spans_of"]
