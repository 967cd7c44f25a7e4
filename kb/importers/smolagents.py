"""smolagents agent memory: ``agent.memory.get_full_steps()`` (or ``get_succinct_steps()``), a
list of step dicts, optionally wrapped as ``{system_prompt?, steps: [...]}``.

Step shapes, from ``smolagents.memory`` (``MemoryStep.dict()``):

* ``SystemPromptStep`` ``{system_prompt}`` -> a system message;
* ``TaskStep`` ``{task, task_images}`` -> a user message (the first one is the task);
* ``PlanningStep`` ``{plan, model_input_messages, model_output_message, timing, token_usage}``
  -> a ``plan`` step (and an item of ``plan``);
* ``ActionStep`` ``{step_number, timing{start_time, end_time, duration}, model_output,
  tool_calls[{id, type, function{name, arguments}}], code_action, observations, error{type,
  message}, action_output, is_final_answer, token_usage, model_input_messages...}`` -> a
  ``tool_call`` step per call (content = ``model_output``; a code action's arguments are
  ``{"code": code_action}``), then an observation step (``observations``) or an ``error`` step;
  a step with no call is a message;
* ``FinalAnswerStep`` ``{output}`` -> a ``final_answer`` step and ``final_answer``.

Outcome: ``failure`` when the run ended on ``AgentMaxStepsError`` (or on an error with no final
answer), else unknown. smolagents records no run id: ``source_id`` is None.
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
    as_text,
    build_experience,
    mapping,
    miss,
    parse_json,
    rest,
    text_of,
)
from kb.importers.messages import call_part
from kb.models import ExperienceCreate, Outcome

ACTION_KEYS = {"model_output", "tool_calls", "observations", "code_action", "action_output"}
ACTION_KEYS |= {"error", "model_output_message", "llm_output"}
ACTION_MAPPED = {"step_number", "step", "timing", "start_time", "end_time", "duration"}
ACTION_MAPPED |= {"model_output", "llm_output", "tool_calls", "code_action", "observations"}
ACTION_MAPPED |= {"error", "action_output", "is_final_answer"}


def step_kind(step: Any) -> str | None:
    """Which memory step a dict is: system, task, planning, action, final; None if none."""
    if not isinstance(step, Mapping):
        return None
    keys = set(step)
    if keys == {"system_prompt"}:
        return "system"
    if "task" in keys and keys <= {"task", "task_images"}:
        return "task"
    if "plan" in keys and keys & {"model_output_message", "timing", "model_input_messages"}:
        return "planning"
    if ("step_number" in keys or "step" in keys) and keys & ACTION_KEYS:
        return "action"
    if keys == {"output"}:
        return "final"
    return None


def _steps(record: Any) -> tuple[list[Any], Mapping[str, Any]]:
    if isinstance(record, Mapping) and isinstance(record.get("steps"), list):
        return record["steps"], record
    return (record if isinstance(record, list) else []), {}


def check(record: Any) -> Check:
    steps, wrapper = _steps(record)
    if not steps:
        return miss("a list of memory steps (or {steps: [...]})")
    kinds = [step_kind(s) for s in steps]
    known = [k for k in kinds if k]
    if len(known) < len(steps):
        bad = kinds.index(None)
        return miss(
            f"step {bad} is no smolagents memory step (TaskStep, ActionStep...)",
            0.6 * len(known) / len(steps),
        )
    if not {"action", "planning"} & set(known):
        return miss("no ActionStep or PlanningStep", 0.5)
    if wrapper and set(wrapper) - {"steps", "system_prompt", "agent_name", "name"}:
        return miss("the wrapper may only hold steps, system_prompt and the agent's name", 0.6)
    return MATCH


def _error_text(error: Any) -> str | None:
    if isinstance(error, Mapping):
        kind, message = error.get("type"), error.get("message")
        return f"{kind}: {message}" if kind else as_text(message)
    return as_text(error)


def _add_action(log: StepLog, step: Mapping[str, Any], agent: str) -> None:
    timing = mapping(step.get("timing")) or step
    start, duration = timing.get("start_time"), timing.get("duration")
    output = step.get("model_output", step.get("llm_output"))
    thought = output if isinstance(output, str) else text_of(output)
    extra = rest(step, ACTION_MAPPED)
    calls = parse_json(step.get("tool_calls")) or []
    parts = [call_part(c) for c in calls if isinstance(c, Mapping)]
    code = step.get("code_action")
    first = len(log)
    for number, part in enumerate(parts):
        args = part.args
        if code and (not args or set(args) <= {"_raw", "_value"}):
            args = {"code": code}  # a CodeAgent's python_interpreter call carries the code
        log.call(
            Draft(
                role="assistant",
                agent=agent,
                content=thought if number == 0 else None,
                tool=part.tool,
                args=args,
                timestamp=start,
                duration=duration if number == 0 else None,
                extra=part.extra,
            ),
            part.call_id,
        )
    if not parts:
        log.add(
            Draft(
                role="assistant", agent=agent, content=thought, timestamp=start, duration=duration
            )
        )
    if len(log) > first:
        log.drafts[first].extra = {**extra, **log.drafts[first].extra}
        if step.get("step_number", step.get("step")) is not None:
            log.drafts[first].extra["step_number"] = step.get("step_number", step.get("step"))
    call_id = parts[0].call_id if parts else None
    tool = parts[0].tool if len(parts) == 1 else None
    error = _error_text(step.get("error"))
    observations = step.get("observations")
    if observations is not None or (error and parts):
        log.result(
            Draft(
                role="tool",
                agent="tool",
                tool=tool,
                result=as_text(observations),
                error=error,
                timestamp=timing.get("end_time"),
            ),
            call_id,
        )
    elif error:
        log.add(
            Draft(
                kind="error",
                role="assistant",
                agent=agent,
                error=error,
                timestamp=timing.get("end_time"),
            )
        )


def convert(record: Any, *, source: str, domain: str | None = None) -> ExperienceCreate:
    steps, wrapper = _steps(record)
    if not steps:
        raise ValueError("steps: expected a non-empty list of smolagents memory steps")
    agent = str(wrapper.get("agent_name") or wrapper.get("name") or "agent")
    log = StepLog()
    if wrapper.get("system_prompt"):
        log.add(Draft(role="system", agent="system", content=as_text(wrapper["system_prompt"])))
    plan: list[str] = []
    final: str | None = None
    last_error: str | None = None
    for index, step in enumerate(steps):
        kind = step_kind(step)
        if kind is None:
            raise ValueError(f"steps[{index}]: not a smolagents memory step")
        if kind == "system":
            log.add(Draft(role="system", agent="system", content=as_text(step["system_prompt"])))
        elif kind == "task":
            extra = rest(step, {"task"})
            log.add(Draft(role="user", agent="user", content=as_text(step["task"]), extra=extra))
        elif kind == "planning":
            timing = mapping(step.get("timing"))
            text = as_text(step.get("plan"))
            if text:
                plan.append(text)
            log.add(
                Draft(
                    kind="plan",
                    role="assistant",
                    agent=agent,
                    content=text,
                    timestamp=timing.get("start_time"),
                    duration=timing.get("duration"),
                    extra=rest(step, {"plan", "timing"}),
                )
            )
        elif kind == "action":
            _add_action(log, step, agent)
            last_error = _error_text(step["error"]) if step.get("error") else None
            if step.get("is_final_answer") and step.get("action_output") is not None:
                final = as_text(step["action_output"])
        else:
            final = as_text(step["output"])
            log.add(Draft(kind="final_answer", role="assistant", agent=agent, content=final))
    max_steps = bool(last_error and last_error.startswith("AgentMaxStepsError"))
    failed = max_steps or (last_error is not None and final is None)
    task = next(
        (as_text(s["task"]) for s in steps if step_kind(s) == "task" and s.get("task")), None
    )
    return build_experience(
        log,
        task=task,
        source=source,
        domain=domain,
        artifacts=rest(wrapper, {"steps", "system_prompt", "agent_name", "name"}),
        agent=agent,
        outcome=Outcome.failure if failed else Outcome.unknown,
        final_answer=final,
        plan=plan,
    )


FORMAT = Format(
    name="smolagents",
    summary="smolagents memory steps (TaskStep, ActionStep, PlanningStep, FinalAnswerStep)",
    check=check,
    convert=convert,
)
