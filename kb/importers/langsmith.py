"""LangSmith run trees: the run create/update payloads the SDK sends (``{post: [runs], patch:
[runs]}``), a run with nested ``child_runs``, or a list of runs. A run is ``{id, trace_id,
parent_run_id, dotted_order, run_type, name, inputs, outputs, error, start_time, end_time,
extra, events, tags}``; post and patch payloads of one run are merged by ``id``, and a file's runs
are grouped by ``trace_id``: one experience per trace.

The runs are walked depth first in ``dotted_order``: an ``llm`` run gives the new messages of its
``inputs.messages`` (OpenAI dicts or LangChain messages; ``prompts`` for completion models) and
its reply (``outputs.choices[0].message``, ``outputs.generations[0][0]``, an Anthropic message);
a ``tool`` (or ``retriever``) run gives the tool's observation, and its call too when no model
output named it; a ``chain`` only gives steps when nothing below it does. A run's ``error`` is an
``error`` step (or the tool's error); an errored root makes the outcome ``failure``. The task is
the first user message, else the root run's input; ``source_id`` is the trace id.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
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
    mapping,
    miss,
    parse_json,
    rest,
    seconds_between,
)
from kb.importers.messages import Message, Part, Transcript, message_of
from kb.models import ExperienceCreate, Outcome

RUN_TYPES = {"llm", "chain", "tool", "retriever", "embedding", "prompt", "parser"}
LC_ROLES = {
    "HumanMessage": "user",
    "HumanMessageChunk": "user",
    "AIMessage": "assistant",
    "AIMessageChunk": "assistant",
    "SystemMessage": "system",
    "ToolMessage": "tool",
    "FunctionMessage": "tool",
}
TEXT_KEYS = ("input", "question", "query", "prompt", "task", "output", "answer", "text", "content")


def run_id(run: Mapping[str, Any]) -> str | None:
    """A run's id, or the one its ``dotted_order`` ends with (JS patches carry no ``id``)."""
    if run.get("id") is not None:
        return str(run["id"])
    order = run.get("dotted_order")
    if isinstance(order, str) and "Z" in order:
        last = order.rsplit(".", 1)[-1]
        return last[last.index("Z") + 1 :] or None
    return None


def _is_run(run: Any) -> bool:
    return (
        isinstance(run, Mapping)
        and run_id(run) is not None
        and (
            run.get("run_type") in RUN_TYPES
            or bool({"inputs", "outputs", "dotted_order", "trace_id"} & set(run))
        )
    )


def _typed(runs: list[Any]) -> bool:
    return bool(runs) and all(_is_run(r) for r in runs) and any("run_type" in r for r in runs)


def check(record: Any) -> Check:
    if isinstance(record, Mapping) and ("post" in record or "patch" in record):
        runs = [*(record.get("post") or []), *(record.get("patch") or [])]
        if _typed(runs):
            return MATCH
        return miss("post/patch must hold runs (id, run_type, inputs/outputs)", 0.6)
    if isinstance(record, list):
        if _typed(record):
            return MATCH
        if record and any(_is_run(r) for r in record):
            return miss("every run needs an id and a run_type", 0.5)
        return miss("a list of runs (id, run_type, inputs, outputs)")
    if isinstance(record, Mapping) and _is_run(record):
        if record.get("run_type") in RUN_TYPES:
            return MATCH
        return miss(f"run_type must be one of {', '.join(sorted(RUN_TYPES))}", 0.7)
    if isinstance(record, Mapping) and "run_type" in record:
        return miss("a run needs an id", 0.6)
    return miss("no run (id, run_type, inputs, outputs) or post/patch payload")


def _flatten(runs: list[Any], parent: Any = None) -> Iterator[dict[str, Any]]:
    for run in runs:
        if not isinstance(run, Mapping):
            continue
        data = {k: v for k, v in run.items() if k != "child_runs"}
        data["id"] = run_id(run)
        if parent is not None and not data.get("parent_run_id"):
            data["parent_run_id"] = parent
        yield data
        yield from _flatten(run.get("child_runs") or [], data["id"])


def runs_of(record: Any) -> list[dict[str, Any]]:
    """The runs of a record, child runs flattened, post and patch of one id merged."""
    if isinstance(record, Mapping) and ("post" in record or "patch" in record):
        items = [*(record.get("post") or []), *(record.get("patch") or [])]
    elif isinstance(record, list):
        items = record
    else:
        items = [record]
    merged: dict[str, dict[str, Any]] = {}
    for run in _flatten(items):
        key = str(run.get("id"))
        into = merged.setdefault(key, {})
        for name, value in run.items():
            if not is_empty(value) or name not in into:
                into[name] = value
    return list(merged.values())


def regroup(records: list[Any]) -> list[Any]:
    """One record (a list of merged runs) per trace id."""
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    runs = runs_of([r for record in records for r in _items(record)])
    for run in runs:
        traces[str(run.get("trace_id") or run.get("id"))].append(run)
    return list(traces.values())


def _items(record: Any) -> list[Any]:
    if isinstance(record, Mapping) and ("post" in record or "patch" in record):
        return [*(record.get("post") or []), *(record.get("patch") or [])]
    return record if isinstance(record, list) else [record]


# -- runs to steps -------------------------------------------------------------------------------
def lc_message(raw: Any) -> Any:
    """A LangChain message (serialized ``{lc, id, kwargs}``, ``{type, data}`` or ``.dict()``) as
    an OpenAI-style dict; anything else as it is."""
    if not isinstance(raw, Mapping):
        return raw
    if "kwargs" in raw and isinstance(raw.get("id"), list):
        kwargs = mapping(raw["kwargs"])
        role = LC_ROLES.get(str(raw["id"][-1]), kwargs.get("role") or kwargs.get("type"))
    elif isinstance(raw.get("data"), Mapping) and "type" in raw:
        kwargs, role = raw["data"], raw["type"]
    elif "type" in raw and "content" in raw and "role" not in raw:
        kwargs, role = raw, raw["type"]
    else:
        return raw
    extra = dict(kwargs.get("additional_kwargs") or {})
    calls = kwargs.get("tool_calls") or extra.pop("tool_calls", None)
    mapped = {"content", "tool_calls", "tool_call_id", "name", "type", "additional_kwargs"}
    return {
        **rest(kwargs, mapped),
        **extra,
        "role": role,
        "content": kwargs.get("content"),
        "tool_calls": calls,
        "tool_call_id": kwargs.get("tool_call_id"),
        "name": kwargs.get("name"),
    }


def _text_of(value: Any) -> str | None:
    value = parse_json(value)
    if isinstance(value, str):
        return value or None
    if isinstance(value, Mapping):
        for key in TEXT_KEYS:
            if isinstance(value.get(key), str) and value[key].strip():
                return str(value[key])
        return as_text(value) if value else None
    return as_text(value)


class _Walk:
    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.runs = runs
        self.log = StepLog()
        self.transcript = Transcript(self.log)
        ids = {str(r.get("id")) for r in runs}
        self.children: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.roots: list[dict[str, Any]] = []
        for run in sorted(runs, key=lambda r: str(r.get("dotted_order") or r.get("start_time"))):
            parent = run.get("parent_run_id")
            if parent is not None and str(parent) in ids:
                self.children[str(parent)].append(run)
            else:
                self.roots.append(run)

    def below(self, run: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        for child in self.children.get(str(run.get("id")), []):
            yield child
            yield from self.below(child)

    def visit(self, run: dict[str, Any], agent: str | None) -> None:
        kind = run.get("run_type")
        below = {r.get("run_type") for r in self.below(run)}
        handled = True
        if kind == "llm":
            self.llm(run)
        elif kind in {"tool", "retriever"}:
            self.tool(run, agent)
        elif agent is None and kind != "embedding" and not below & {"llm", "tool", "retriever"}:
            self.io(run)  # a root with no model or tool run in its tree
        else:
            handled = False
        if kind == "chain" or agent is None:
            agent = str(run.get("name") or agent or "agent")
        for child in self.children.get(str(run.get("id")), []):
            self.visit(child, agent)
        if run.get("error") and not handled:
            self.log.add(
                Draft(
                    kind="error",
                    role="assistant",
                    agent=agent,
                    error=as_text(run["error"]),
                    timestamp=run.get("end_time"),
                )
            )

    def llm(self, run: Mapping[str, Any]) -> None:
        inputs = mapping(run.get("inputs"))
        name = str(run.get("name") or "llm")
        messages: list[Message] = []
        if inputs.get("system"):
            messages.append(message_of({"role": "system", "content": inputs["system"]}))
        raw = inputs.get("messages")
        if isinstance(raw, list) and raw and isinstance(raw[0], list):
            raw = raw[0]  # LangChain batches: one list of messages per prompt
        if isinstance(raw, list):
            messages += [message_of(lc_message(m)) for m in raw if isinstance(m, Mapping)]
        else:
            prompts = inputs.get("prompts") or [inputs.get("prompt") or inputs.get("input")]
            messages += [
                Message(role="user", parts=[Part("text", text=as_text(p))]) for p in prompts if p
            ]
        for message in messages:
            message.timestamp = run.get("start_time")
            if message.role == "assistant":
                message.agent = message.agent or name
        self.transcript.send(messages)
        before = len(self.log)
        for message in self._replies(run.get("outputs")):
            message.agent = message.agent or name
            message.timestamp = run.get("end_time")
            self.transcript.reply(message)
        if len(self.log) > before:
            duration = seconds_between(run.get("start_time"), run.get("end_time"))
            self.log.drafts[before].duration = duration
        if run.get("error"):
            self.log.add(
                Draft(
                    kind="error",
                    role="assistant",
                    agent=name,
                    error=as_text(run["error"]),
                    timestamp=run.get("end_time"),
                )
            )

    def _replies(self, outputs: Any) -> list[Message]:
        if not isinstance(outputs, Mapping) or not outputs:
            return []
        choices = outputs.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
            raw = dict(choices[0].get("message") or {})
            raw.setdefault("role", "assistant")
            message = message_of(raw)
            message.extra.update(rest(choices[0], {"message", "index"}))
            return [message]
        generations = outputs.get("generations")
        if isinstance(generations, list) and generations:
            first = generations[0][0] if isinstance(generations[0], list) else generations[0]
            if isinstance(first, Mapping):
                raw = lc_message(first.get("message")) or {"content": first.get("text")}
                if not isinstance(raw, Mapping):
                    return []
                message = message_of({**raw, "role": "assistant"})
                message.extra.update(rest(first, {"message", "text"}))
                return [message]
        if outputs.get("role") == "assistant" or isinstance(outputs.get("content"), list):
            return [message_of({**outputs, "role": "assistant"})]
        output = outputs.get("output")
        if isinstance(output, Mapping):
            return [message_of({**lc_message(output), "role": "assistant"})]
        text = _text_of(outputs)
        return [Message(role="assistant", parts=[Part("text", text=text)])] if text else []

    def tool(self, run: Mapping[str, Any], agent: str | None) -> None:
        name = str(run.get("name") or run.get("run_type"))
        inputs = mapping(run.get("inputs"))
        outputs = mapping(run.get("outputs"))
        output = outputs.get("output", outputs.get("documents", outputs or None))
        output = lc_message(output) if isinstance(output, Mapping) else output
        call_id = inputs.get("tool_call_id")
        if isinstance(output, Mapping):
            call_id = call_id or output.get("tool_call_id")
            output = output.get("content", output)
        if not self.log.called(call_id):
            open_call = None if call_id else self.log.open_call(name)
            if open_call is not None:
                call_id = open_call.link
            else:
                raw = inputs.get("input") if set(inputs) <= {"input", "tool_call_id"} else inputs
                args = rest(raw, {"tool_call_id"}) if isinstance(raw, Mapping) else parse_json(raw)
                self.log.call(
                    Draft(
                        role="assistant",
                        agent=agent or "assistant",
                        tool=name,
                        args=as_args(args, key="input"),
                        timestamp=run.get("start_time"),
                    ),
                    call_id,
                )
        if self.log.answered(call_id):
            return
        self.log.result(
            Draft(
                role="tool",
                agent="tool",
                tool=name,
                result=as_text(output) if output is not None else None,
                error=as_text(run.get("error")),
                timestamp=run.get("end_time"),
                duration=seconds_between(run.get("start_time"), run.get("end_time")),
            ),
            call_id,
        )

    def io(self, run: Mapping[str, Any]) -> None:
        """A run with no llm or tool run below: its input and output as messages."""
        question, answer = _text_of(run.get("inputs")), _text_of(run.get("outputs"))
        if question:
            self.transcript.send(
                [
                    Message(
                        role="user",
                        parts=[Part("text", text=question)],
                        timestamp=run.get("start_time"),
                    )
                ]
            )
        if answer:
            self.transcript.reply(
                Message(
                    role="assistant",
                    parts=[Part("text", text=answer)],
                    agent=str(run.get("name") or "assistant"),
                    timestamp=run.get("end_time"),
                )
            )
        if run.get("error"):
            self.log.add(
                Draft(
                    kind="error",
                    role="assistant",
                    agent=str(run.get("name")),
                    error=as_text(run["error"]),
                    timestamp=run.get("end_time"),
                )
            )


def _artifact(run: Mapping[str, Any]) -> dict[str, Any]:
    item = rest(run, {"inputs", "outputs", "error"})
    inputs, outputs = run.get("inputs"), run.get("outputs")
    if isinstance(inputs, Mapping):
        item["inputs"] = rest(inputs, {"messages", "system", "prompts"})
    if isinstance(outputs, Mapping):
        item["outputs"] = rest(outputs, {"choices", "generations", "content", "role", "output"})
    return {k: v for k, v in item.items() if not is_empty(v)}


def convert(record: Any, *, source: str, domain: str | None = None) -> ExperienceCreate:
    runs = runs_of(record)
    if not runs:
        raise ValueError("runs: no run found (post/patch, child_runs or a list of runs)")
    walk = _Walk(runs)
    for root in walk.roots:
        walk.visit(root, None)
    root = walk.roots[0]
    task = walk.log.first_user_text() or _text_of(root.get("inputs"))
    final = walk.log.final_text()
    if final is None and root.get("run_type") != "llm":
        final = _text_of(root.get("outputs"))
    return build_experience(
        walk.log,
        task=task,
        source=source,
        domain=domain,
        source_id=root.get("trace_id") or root.get("id"),
        artifacts={"runs": [_artifact(r) for r in runs]},
        agent=None if root.get("name") is None else str(root["name"]),
        outcome=Outcome.failure if any(r.get("error") for r in walk.roots) else Outcome.unknown,
        final_answer=final,
    )


FORMAT = Format(
    name="langsmith",
    summary="LangSmith runs: {post, patch} payloads, run trees with child_runs, run lists",
    check=check,
    convert=convert,
    regroup=regroup,
)
