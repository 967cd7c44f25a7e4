"""SWE-agent trajectories (``.traj``), both layouts:

* a run: ``{environment, trajectory: [{thought, action, observation, response, state,
  execution_time?}], history: [...], info: {exit_status, submission, model_stats},
  replay_config?}``. Steps: the system prompt and the task message from ``history``, then per
  trajectory entry a ``tool_call`` step (content = ``thought``) and an observation step (result =
  ``observation``). The tool and its arguments come from the matching ``history`` message's
  ``tool_calls`` (function-calling agents), else from the action text (first word = tool,
  ``{"command": action}``);
* a demonstration: ``{history: [...]}`` only, messages carrying ``message_type``
  (``system_prompt``/``observation``/``action``), ``action``/``thought`` and ``tool_calls``; one
  step per message (role ``tool``, or a ``user`` reply to an action, is an observation).

History messages marked ``is_demo`` (in-context demonstrations) are kept in
``artifacts["demonstrations"]``, not as steps. The task is ``replay_config.problem_statement``,
else the first user message (the issue text between ``ISSUE:`` and ``INSTRUCTIONS:`` when the
standard template is used). ``info.exit_status`` ``submitted`` leaves the outcome unknown (only
the tests decide); an ``exit_*`` status without a submission (cost, context, format, error) is a
``failure``. ``final_answer`` is ``info.submission`` (the patch, or the flag).
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
    build_experience,
    mapping,
    miss,
    parse_json,
    rest,
)
from kb.importers.messages import Part, call_part, role_of
from kb.importers.openai_chat import looks_like_error
from kb.models import ExperienceCreate, Outcome

ENTRY_MAPPED = {"thought", "action", "observation", "execution_time"}
MESSAGE_MAPPED = {"role", "content", "thought", "action", "tool_calls", "tool_call_ids", "agent"}
MESSAGE_MAPPED |= {"message_type"}


def _is_history(history: Any) -> bool:
    return (
        isinstance(history, list)
        and bool(history)
        and all(isinstance(m, Mapping) and isinstance(m.get("role"), str) for m in history)
        and any(
            "message_type" in m or (m["role"] == "assistant" and ("action" in m or "thought" in m))
            for m in history
        )
    )


def check(record: Any) -> Check:
    if not isinstance(record, Mapping):
        return miss("an object with trajectory and/or history")
    trajectory = record.get("trajectory")
    if trajectory is not None:
        if (
            isinstance(trajectory, list)
            and trajectory
            and all(
                isinstance(e, Mapping) and {"action", "observation"} <= set(e) for e in trajectory
            )
        ):
            return MATCH
        return miss("trajectory entries need action and observation", 0.7)
    if "question" in record:
        return miss("a history with a question is a multi-agent log", 0.2)
    if _is_history(record.get("history")):
        return MATCH
    if "history" in record and ("info" in record or "environment" in record):
        return miss("no trajectory, and history has no action/thought/message_type", 0.6)
    return miss("no trajectory list, nor a history of action/thought messages")


def _action_call(action: Any) -> Part:
    """The tool of a text action: its first word; the whole action is the command."""
    text = str(action or "").strip()
    tool = text.split(maxsplit=1)[0] if text else None
    if tool is not None and len(tool) > 100:  # not a command name; the command keeps it all
        tool = None
    return Part("call", tool=tool, args={"command": text} if text else {})


def _calls(message: Mapping[str, Any] | None, action: Any) -> list[Part]:
    raw = message.get("tool_calls") if message else None
    raw = parse_json(raw)
    if isinstance(raw, list) and raw:
        return [call_part(c) for c in raw]
    return [_action_call(action)] if action not in (None, "") else []


def _task_of(text: str | None) -> str | None:
    if not text:
        return None
    if "ISSUE:\n" in text:
        text = text.split("ISSUE:\n", 1)[1]
    return text.split("\n\nINSTRUCTIONS:", 1)[0].strip() or None


def _add_calls(
    log: StepLog,
    parts: list[Part],
    *,
    agent: str,
    thought: str | None,
    duration: Any = None,
    extra: dict[str, Any] | None = None,
) -> str | None:
    """The call steps of one action; returns the call id of the first (for its observation)."""
    first_id: str | None = None
    for number, part in enumerate(parts):
        draft = Draft(
            kind="tool_call",
            role="assistant",
            agent=agent,
            content=thought if number == 0 else None,
            tool=part.tool,
            args=part.args,
            duration=duration if number == 0 and isinstance(duration, int | float) else None,
            extra={**part.extra, **(extra or {})} if number == 0 else dict(part.extra),
        )
        log.call(draft, part.call_id)
        first_id = first_id or part.call_id
    return first_id


def _observe(log: StepLog, text: Any, call_id: str | None, extra: dict[str, Any]) -> None:
    text = None if text is None else str(text)
    tool = (
        None
        if call_id
        else next((d.tool for d in reversed(log.drafts) if d.kind == "tool_call"), None)
    )
    draft = Draft(
        role="tool",
        agent="tool",
        tool=tool,
        result=text,
        error=text if looks_like_error(text) else None,
        extra=extra,
    )
    log.result(draft, call_id)


def convert(record: Any, *, source: str, domain: str | None = None) -> ExperienceCreate:
    if not isinstance(record, Mapping):
        raise ValueError("a .traj record must be an object")
    history = [h for h in record.get("history") or [] if isinstance(h, Mapping)]
    demos = [h for h in history if h.get("is_demo")]
    body = [h for h in history if not h.get("is_demo")]
    trajectory = record.get("trajectory") or []
    log = StepLog()
    if trajectory:
        for role in ("system", "user"):
            message = next((h for h in body if h.get("role") == role), None)
            if message is not None:
                log.add(
                    Draft(
                        role=role,
                        agent=role,
                        content=str(message.get("content") or "") or None,
                        extra=rest(message, MESSAGE_MAPPED),
                    )
                )
        actions = [h for h in body if h.get("role") == "assistant"]
        paired: list[Mapping[str, Any] | None] = (
            list(actions) if len(actions) == len(trajectory) else [None] * len(trajectory)
        )
        for index, (entry, message) in enumerate(zip(trajectory, paired, strict=True)):
            if not isinstance(entry, Mapping):
                raise ValueError(f"trajectory[{index}]: expected an object")
            thought = entry.get("thought") or entry.get("response")
            extra = rest(entry, ENTRY_MAPPED)
            if extra.get("response") == entry.get("thought"):
                extra.pop("response")
            agent = str((message or {}).get("agent") or "agent")
            call_id = _add_calls(
                log,
                _calls(message, entry.get("action")),
                agent=agent,
                thought=thought,
                duration=entry.get("execution_time"),
                extra=extra,
            )
            _observe(log, entry.get("observation"), call_id, {})
    else:
        for message in body:
            role = role_of(message.get("role"))
            agent = str(message.get("agent") or role)
            extra = rest(message, MESSAGE_MAPPED)
            if message.get("message_type"):
                extra["message_type"] = message["message_type"]
            content = message.get("content")
            last = log.drafts[-1] if log.drafts else None
            if role == "assistant" and (message.get("action") or message.get("tool_calls")):
                _add_calls(
                    log,
                    _calls(message, message.get("action")),
                    agent=agent,
                    thought=str(message.get("thought") or content or "") or None,
                    extra=extra,
                )
            elif role == "tool" or (
                role == "user" and last is not None and last.kind == "tool_call"
            ):
                ids = message.get("tool_call_ids") or [None]
                _observe(log, content, ids[0], extra)
            else:
                log.add(
                    Draft(role=role, agent=agent, content=str(content or "") or None, extra=extra)
                )
    info = mapping(record.get("info"))
    replay = parse_json(record.get("replay_config"))
    replay = mapping(replay)
    problem = mapping(replay.get("problem_statement"))
    task = problem.get("text") or _task_of(log.first_user_text())
    status = str(info.get("exit_status") or "")
    submission = info.get("submission")
    failed = status.startswith(("exit_", "early_exit")) and not submission
    artifacts = rest(record, {"trajectory", "history", "info", "replay_config"})
    artifacts["info"] = rest(info, {"submission"})
    if replay:
        artifacts["replay_config"] = replay
    if demos:
        artifacts["demonstrations"] = demos
    return build_experience(
        log,
        task=task,
        source=source,
        domain=domain,
        source_id=problem.get("id"),
        artifacts=artifacts,
        agent="swe-agent",
        outcome=Outcome.failure if failed else Outcome.unknown,
        final_answer=str(submission) if submission else None,
    )


FORMAT = Format(
    name="swe-agent",
    summary="SWE-agent .traj: {trajectory, history, info} runs and history-only demonstrations",
    check=check,
    convert=convert,
)
