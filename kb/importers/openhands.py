"""OpenHands event streams and evaluation outputs.

Shapes: a list of events ``{id, timestamp, source, message, action | observation, args, content,
extras, cause, tool_call_metadata}``; an evaluation output line ``{instance_id, instruction,
instance{problem_statement...}, history: [events], metrics, error, test_result{git_patch,
report?}, metadata}``; the older resolver output ``{issue{owner, repo, number, title, body},
instruction, history, git_patch, success, result_explanation, error}`` whose events are flat (no
``args``/``extras``: their fields sit on the event).

Events become steps: a ``message`` action is a message (source user -> role user); ``system`` the
system prompt; an action the model took through a tool (``run``, ``read``, ``edit``,
``run_ipython``, ``think``, ``finish``...) a ``tool_call`` step (tool =
``tool_call_metadata.function_name``, else the action; args = the model's arguments, else the
event's args; content = the ``thought``); ``recall`` a ``recall`` step; an observation an
observation step of its action (``cause``, else the action before it). ``observation: error``, and a
command that exits non-zero (``exit_code``), are ``error`` steps.

Outcome: ``success`` (resolver) or ``test_result.report.resolved`` when present, ``failure`` when
the run stopped on ``error``, else unknown. ``final_answer``: the patch (``git_patch``), else the
``finish`` action's message. ``source_id``: ``instance_id``, ``owner/repo#number``, else None.
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
    mapping,
    miss,
    parse_json,
    rest,
)
from kb.models import ExperienceCreate, Outcome

EVENT_MAPPED = {"id", "timestamp", "source", "action", "observation", "args", "content", "cause"}
EVENT_MAPPED |= {"extras", "tool_call_metadata"}
FLAT_META = {"thought", "keep_prompt", "is_confirmed", "action_risk", "kernel_init_code"}
RUN_KEYS = {"instance_id", "instruction", "test_result", "issue", "git_patch", "metadata"}
MESSAGE_ACTIONS = {"message", "system"}


def _is_event(event: Any) -> bool:
    return (
        isinstance(event, Mapping)
        and "role" not in event
        and (isinstance(event.get("action"), str) or isinstance(event.get("observation"), str))
    )


def _is_events(events: Any) -> bool:
    return isinstance(events, list) and bool(events) and all(_is_event(e) for e in events)


def check(record: Any) -> Check:
    if isinstance(record, list):
        if _is_events(record):
            return MATCH
        if any(_is_event(e) for e in record):
            return miss("every event needs an action or an observation", 0.5)
        return miss("a list of events (action/observation)")
    if not isinstance(record, Mapping) or "history" not in record:
        return miss("an event list or an object with history")
    if not _is_events(record["history"]):
        return miss("history entries are not OpenHands events (action/observation)", 0.3)
    if not RUN_KEYS & set(record):
        return miss(f"history of events but none of {', '.join(sorted(RUN_KEYS))}", 0.7)
    return MATCH


def _args(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event's arguments: ``args``, or (older flat events) the fields next to ``action``."""
    if isinstance(event.get("args"), Mapping):
        return dict(event["args"])
    return {k: v for k, v in event.items() if k not in EVENT_MAPPED | {"message"}}


def _extras(event: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(event.get("extras"), Mapping):
        return dict(event["extras"])
    return {k: v for k, v in event.items() if k not in EVENT_MAPPED | {"message"}}


def _model_call(metadata: Any) -> tuple[str | None, dict[str, Any] | None]:
    """The tool and arguments of the model's tool call behind an action."""
    if not isinstance(metadata, Mapping):
        return None, None
    call_id = metadata.get("tool_call_id")
    response = metadata.get("model_response")
    choices = response.get("choices") if isinstance(response, Mapping) else None
    for choice in choices if isinstance(choices, list) else []:
        message = choice.get("message") if isinstance(choice, Mapping) else None
        for call in (message or {}).get("tool_calls") or []:
            if isinstance(call, Mapping) and call.get("id") == call_id:
                function = call.get("function") or {}
                return function.get("name"), as_args(parse_json(function.get("arguments")))
    return metadata.get("function_name"), None


def _exit_code(extras: Mapping[str, Any]) -> Any:
    meta = extras.get("metadata")
    if isinstance(meta, Mapping) and "exit_code" in meta:
        return meta["exit_code"]
    return extras.get("exit_code")


def add_events(log: StepLog, events: list[Any]) -> str | None:
    """Add the steps of an event list; returns the ``finish`` action's message."""
    tools: dict[Any, str] = {}
    metadata: dict[Any, Any] = {}
    last_tool: str | None = None
    finish: str | None = None
    for index, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise ValueError(f"events[{index}]: expected an object")
        stamp = event.get("timestamp")
        source = str(event.get("source") or "")
        extra = rest(event, EVENT_MAPPED | {"message"})
        if isinstance(event.get("action"), str):
            action = event["action"]
            if isinstance(event.get("args"), Mapping):
                args = dict(event["args"])
            else:  # older flat events: the arguments sit on the event
                args = {k: v for k, v in extra.items() if k not in FLAT_META}
                extra = {k: v for k, v in extra.items() if k in FLAT_META}
                if "thought" in event:
                    args["thought"] = event["thought"]
            thought = args.pop("thought", None)
            extra.pop("thought", None)
            if event.get("message") and event["message"] != args.get("content"):
                extra["message"] = event["message"]
            if isinstance(event.get("tool_call_metadata"), Mapping):
                extra["tool_call_metadata"] = metadata[event.get("id")] = event[
                    "tool_call_metadata"
                ]
            role = "user" if source == "user" else "assistant"
            if not source and action == "message" and last_tool is None:
                role = "user"  # flat events carry no source: the opening message is the task
            if action in MESSAGE_ACTIONS and not event.get("tool_call_metadata"):
                content = args.pop("content", None) or event.get("content") or event.get("message")
                if args:
                    extra["args"] = args
                log.add(
                    Draft(
                        role="system" if action == "system" else role,
                        agent=source or ("user" if role == "user" else "agent"),
                        content=as_text(content),
                        timestamp=stamp,
                        extra=extra,
                    )
                )
                continue
            if action == "recall":
                log.add(
                    Draft(
                        kind="recall",
                        role=role,
                        agent=source or role,
                        args=args,
                        timestamp=stamp,
                        extra=extra,
                    )
                )
                tools[event.get("id")] = "recall"
                continue
            name, model_args = _model_call(event.get("tool_call_metadata"))
            tool = name or action
            if action == "finish":
                outputs = parse_json(args.get("outputs"))
                finish = as_text(
                    args.get("final_thought") or thought or event.get("message") or outputs or None
                )
            if model_args is not None and args:
                extra["args"] = args
            if action != tool:
                extra["action"] = action
            content = thought or (event.get("message") if action == "finish" else None)
            log.call(
                Draft(
                    role=role,
                    agent=source or "agent",
                    content=as_text(content),
                    tool=tool,
                    args=model_args if model_args is not None else args,
                    timestamp=stamp,
                    extra=extra,
                ),
                None,
            )
            tools[event.get("id")] = tool
            last_tool = tool
            continue
        observation = str(event.get("observation"))
        extras = _extras(event)
        code = _exit_code(extras)
        content = event.get("content")
        tool = tools.get(event.get("cause"), last_tool)
        error: str | None = None
        if observation == "error":
            error = as_text(content or event.get("message")) or "error"
        elif code not in (None, 0, -1):
            error = f"exit code {code}"
        if not isinstance(event.get("extras"), Mapping):
            extra = dict(extras)  # flat events: the extras sit on the event
        elif extras:
            extra["extras"] = extras
        meta = event.get("tool_call_metadata")
        if meta and meta != metadata.get(event.get("cause")):
            extra["tool_call_metadata"] = meta
        if event.get("message") and event["message"] != content:
            extra["message"] = event["message"]
        if observation != tool:
            extra["observation"] = observation
        if observation == "recall" or tool == "recall":
            log.add(
                Draft(
                    kind="observation",
                    role="tool",
                    agent=source or "environment",
                    result=as_text(content),
                    timestamp=stamp,
                    extra=extra,
                )
            )
            continue
        log.result(
            Draft(
                role="tool",
                agent="tool",
                tool=tool,
                result=as_text(content) if observation != "error" else None,
                error=error,
                timestamp=stamp,
                extra=extra,
            ),
            None,
        )
    return finish


def convert(record: Any, *, source: str, domain: str | None = None) -> ExperienceCreate:
    log = StepLog()
    if isinstance(record, list):
        finish = add_events(log, record)
        return build_experience(
            log,
            task=log.first_user_text(),
            source=source,
            domain=domain,
            agent="openhands",
            final_answer=finish,
        )
    if not isinstance(record, Mapping) or not isinstance(record.get("history"), list):
        raise ValueError("history: expected a list of OpenHands events")
    finish = add_events(log, record["history"])
    instance = mapping(record.get("instance"))
    issue = mapping(record.get("issue"))
    issue_text = "\n\n".join(str(issue[k]) for k in ("title", "body") if issue.get(k))
    task = instance.get("problem_statement") or issue_text or record.get("instruction")
    test_result = mapping(record.get("test_result"))
    report = mapping(test_result.get("report"))
    outcome = Outcome.unknown
    if isinstance(record.get("success"), bool):
        outcome = Outcome.success if record["success"] else Outcome.failure
    elif isinstance(report.get("resolved"), bool):
        outcome = Outcome.success if report["resolved"] else Outcome.failure
    elif record.get("error"):
        outcome = Outcome.failure
    source_id = record.get("instance_id")
    if source_id is None and issue.get("repo") and issue.get("number") is not None:
        source_id = f"{issue.get('owner')}/{issue['repo']}#{issue['number']}"
    patch = test_result.get("git_patch") or record.get("git_patch")
    metadata = mapping(record.get("metadata"))
    artifacts = rest(record, {"history", "test_result", "git_patch", "success"})
    if test_result:
        artifacts["test_result"] = rest(test_result, {"git_patch"})
    if instance:
        artifacts["instance"] = rest(instance, {"problem_statement"})
    return build_experience(
        log,
        task=task,
        source=source,
        domain=domain,
        source_id=source_id,
        artifacts=artifacts,
        agent=str(metadata.get("agent_class") or "openhands"),
        outcome=outcome,
        final_answer=patch or finish,
    )


FORMAT = Format(
    name="openhands",
    summary="OpenHands event lists, evaluation outputs {instance_id, history, test_result}",
    check=check,
    convert=convert,
)
