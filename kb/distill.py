"""Distillation: a trajectory turned into knowledge worth retrieving (Agent KB's two tiers).

* **Strategy** (how to approach this kind of task): the goal, the ordered decision points (each a
  tool, with the argument bindings that mattered: where each value came from), and the checks
  made before state-changing calls.
* **Plan**: the step skeleton (decision points, and where the agent asked or confirmed).
* **Lessons** (execution tier): for a failure, the failing step, its error and the traced cause;
  for a failure later repaired (``repaired_by``), "instead of X, do Y" from the aligned pair of
  steps; for a success that recovered from an error, what worked after it.

Offline (:func:`distill`, the default) needs no model. :func:`distill_llm` asks any
OpenAI-compatible chat endpoint for the same fields (see :mod:`kb.distill_llm`). Both produce a
:class:`Distillation`, rendered the same way, so readers (retrieval, the context block) never need
to know which wrote it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import BaseModel, Field

from kb.models import Attribution, Experience, ExperienceCreate, Outcome, Step

DISTILLED = "distilled"
"""The provenance marker of distilled text (``Experience.distilled.source``)."""
FIELDS = ("strategy", "plan", "lessons")
VERSION = 1
"""Bumped when the offline rules change, so that stored distillations are recomputed."""

READ_VERBS = frozenset(
    [
        "get",
        "list",
        "find",
        "search",
        "read",
        "fetch",
        "lookup",
        "look",
        "query",
        "show",
        "view",
        "describe",
        "check",
        "calculate",
        "compute",
        "think",
        "retrieve",
        "count",
        "browse",
        "open",
        "inspect",
        "visit",
        "select",
        "peek",
        "load",
        "download",
        "ask",
        "verify",
        "validate",
    ]
)
CONFIRM_RE = re.compile(
    r"\b(yes|yeah|yep|confirm(?:ed)?|correct|go ahead|proceed|sure|ok(?:ay)?)\b", re.I
)
ERROR_RE = re.compile(
    r"\b(error|exception|traceback|failed|invalid|not found|denied|unable to|cannot)\b", re.I
)
SEEN_CHARS = 50_000
"""Characters of a reply searched for the values later calls used."""
MAX_POINTS = 12
"""Decision points written into a strategy (the rest are summarised by count)."""


def is_state_changing(tool: str) -> bool:
    """Whether a tool name reads like it changes state: no query verb at its start."""
    head = re.split(r"[_\-.\s]|(?<=[a-z])(?=[A-Z])", tool.strip())[0].lower()
    return head not in READ_VERBS


def clip(text: str | None, limit: int) -> str:
    """One line of at most ``limit`` characters."""
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


# -- calls --------------------------------------------------------------------------------------
@dataclass
class Call:
    """One tool call of a trajectory with what came back."""

    index: int
    tool: str
    args: dict[str, Any]
    result: str | None = None
    error: str | None = None
    reply_index: int | None = None

    @cached_property
    def seen(self) -> str:
        """The reply, lower-cased and capped (for finding where later arguments came from)."""
        return (self.result or self.error or "")[:SEEN_CHARS].lower()

    @property
    def failed(self) -> bool:
        return bool(self.error) or bool(ERROR_RE.search((self.result or "")[:200]))

    def outcome_text(self, limit: int = 160) -> str:
        if self.error:
            return clip(self.error, limit)
        return clip(self.result, limit) if self.result is not None else "(no reply recorded)"

    def short(self, limit: int = 160) -> str:
        """``tool(arg=value, ...)``."""
        args = ", ".join(f"{k}={_value_text(v)}" for k, v in self.args.items())
        return clip(f"{self.tool}({args})", limit)


def _value_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return clip(text, 40)


def calls_of(steps: Sequence[Step]) -> list[Call]:
    """The tool calls of a trajectory in order, each paired with its reply (the step's own
    ``result``/``error``, else the observation or error steps that follow it)."""
    calls: list[Call] = []
    for step in steps:
        if step.tool and step.kind not in {"observation", "error"} and step.role != "tool":
            call = Call(step.index, step.tool, dict(step.args or {}), step.result, step.error)
            if call.result is not None or call.error is not None:
                call.reply_index = step.index
            calls.append(call)
        elif (step.kind in {"observation", "error"} or step.role == "tool") and calls:
            pending = next(
                (
                    c
                    for c in calls
                    if c.reply_index is None and (not step.tool or step.tool == c.tool)
                ),
                None,
            )
            if pending is not None:
                pending.result = step.result if step.result is not None else step.content
                pending.error = step.error
                pending.reply_index = step.index
    return calls


# -- the distilled structure ----------------------------------------------------------------------
class DecisionPoint(BaseModel):
    """A decision of the run: which tool, and where its arguments came from."""

    tool: str = Field(min_length=1, max_length=200)
    bindings: dict[str, str] = Field(
        default_factory=dict, description="argument -> where its value came from"
    )
    times: int = Field(1, ge=1)
    note: str = Field("", max_length=400)


class Distillation(BaseModel):
    """What distillation derives from one experience."""

    goal: str
    points: list[DecisionPoint] = Field(default_factory=list)
    checks: list[str] = Field(default_factory=list)
    plan: list[str] = Field(default_factory=list)
    lessons: list[str] = Field(default_factory=list)
    method: str = "offline"

    def strategy_text(self) -> str:
        """The strategy as text: ``Goal: ... | Decision points: (1) tool(arg<-source) ...``."""
        parts = [f"Goal: {clip(self.goal, 200)}"]
        if self.points:
            shown = self.points[:MAX_POINTS]
            items = [f"({n}) {point_text(p)}" for n, p in enumerate(shown, start=1)]
            if len(self.points) > len(shown):
                items.append(f"... {len(self.points) - len(shown)} more")
            parts.append("Decision points: " + "; ".join(items))
        else:
            parts.append("Decision points: none (answered without tools)")
        if self.checks:
            parts.append("Checks before state-changing calls: " + "; ".join(self.checks[:6]))
        return " | ".join(parts)


def point_text(point: DecisionPoint) -> str:
    binds = ", ".join(f"{k}<-{clip(v, 60)}" for k, v in list(point.bindings.items())[:6])
    text = f"{point.tool}({binds})"
    if point.times > 1:
        text += f" x{point.times}"
    if point.note:
        text += f" [{clip(point.note, 160)}]"
    return text


POINT_RE = re.compile(r"\((\d+)\) ([^\s(;|]+)\(")


def decision_tools(strategy: str | None) -> list[str]:
    """The tools of a strategy text's decision points, in order (parsed back from the text)."""
    if not strategy or "Decision points:" not in strategy:
        return []
    section = strategy.split("Decision points:", 1)[1].split(" | ", 1)[0]
    return [m.group(2) for m in POINT_RE.finditer(section)]


FAILING_RE = re.compile(r"^Failing step \d+: ([^\s(]+)\(")


def failing_tool(lessons: Sequence[str]) -> str | None:
    """The tool a failure lesson names as the failing step's (``Failing step N: tool(...)``)."""
    for lesson in lessons:
        match = FAILING_RE.match(lesson)
        if match:
            return match.group(1)
    return None


# -- offline distillation -----------------------------------------------------------------------
def _scalars(value: Any, out: list[str], depth: int = 0) -> None:
    if depth > 4:
        return
    if isinstance(value, Mapping):
        for v in value.values():
            _scalars(v, out, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            _scalars(v, out, depth + 1)
    elif isinstance(value, bool) or value is None:
        return
    else:
        text = str(value).strip()
        if len(text) >= 2:
            out.append(text.lower())


def _source(value: Any, user_text: str, earlier: list[Call]) -> str:
    """Where an argument's value came from: an earlier call's result, the user, or the agent."""
    leaves: list[str] = []
    _scalars(value, leaves)
    if not leaves:
        return "given"
    sources: list[str] = []
    for leaf in leaves:
        found = "user" if leaf in user_text else None
        if found is None:
            found = next((c.tool for c in reversed(earlier) if leaf in c.seen), None)
        sources.append(found or "chosen")
    ordered = list(dict.fromkeys(sources))
    return "+".join(ordered[:2])


def _user_texts(exp: ExperienceCreate) -> list[tuple[int, str]]:
    return [
        (s.index, s.content or "")
        for s in exp.steps
        if (s.role or "").lower() in {"user", "human"} and s.content
    ]


def call_bindings(exp: ExperienceCreate, calls: list[Call]) -> list[dict[str, str]]:
    """For each call, where each argument's value came from (``user``, an earlier tool whose
    reply held it, or ``chosen`` by the agent)."""
    users = _user_texts(exp)
    out = []
    for n, call in enumerate(calls):
        said = " ".join([exp.task] + [t for i, t in users if i < call.index]).lower()
        out.append({str(k): _source(v, said, calls[:n]) for k, v in call.args.items()})
    return out


def _points(calls: list[Call], bound: list[dict[str, str]]) -> list[DecisionPoint]:
    """Decision points: the calls in order, consecutive calls of one tool folded into one."""
    points: list[DecisionPoint] = []
    for call, bindings in zip(calls, bound, strict=True):
        if points and points[-1].tool == call.tool:
            last = points[-1]
            last.times += 1
            for k, v in bindings.items():
                if k not in last.bindings:
                    last.bindings[k] = v
                elif v not in last.bindings[k].split("|"):
                    last.bindings[k] = clip(f"{last.bindings[k]}|{v}", 60)
            if call.failed and not last.note:
                last.note = f"one call failed: {call.outcome_text(100)}"
            continue
        note = f"failed: {call.outcome_text(120)}" if call.failed else ""
        points.append(DecisionPoint(tool=call.tool, bindings=bindings, note=note))
    return points


def _checks(calls: list[Call], steps: Sequence[Step], points: list[DecisionPoint]) -> list[str]:
    """What was looked up or confirmed before each state-changing call."""
    out: list[str] = []
    seen: set[str] = set()
    for n, call in enumerate(calls):
        if not is_state_changing(call.tool) or call.tool in seen:
            continue
        seen.add(call.tool)
        reads = [c.tool for c in calls[:n] if not is_state_changing(c.tool)]
        used = {
            s for v in _bindings_of(points, call.tool).values() for s in v.split("+") if s
        } & set(reads)
        looked = list(dict.fromkeys(t for t in reads if t in used)) or list(
            dict.fromkeys(reads[-2:])
        )
        previous = calls[n - 1].index if n else -1
        confirmed = any(
            (s.role or "").lower() in {"user", "human"}
            and previous < s.index < call.index
            and CONFIRM_RE.search((s.content or "")[:200])
            for s in steps
        )
        parts = [f"{call.tool} after {', '.join(looked)}" if looked else f"{call.tool} unchecked"]
        if confirmed:
            parts.append("user confirmed")
        out.append(" ".join([parts[0], f"({parts[1]})" if len(parts) > 1 else ""]).strip())
    return out


def _bindings_of(points: list[DecisionPoint], tool: str) -> dict[str, str]:
    return next((p.bindings for p in points if p.tool == tool), {})


def _plan(calls: list[Call], steps: Sequence[Step]) -> list[str]:
    """The step skeleton: each decision point, and where the agent asked the user something."""
    plan: list[str] = []
    for step in steps:
        role = (step.role or "").lower()
        if step.tool and step.kind not in {"observation", "error"} and role != "tool":
            call = next((c for c in calls if c.index == step.index), None)
            keys = ", ".join(list(call.args)[:5]) if call else ""
            item = f"{step.tool}({keys})"
            if call is not None and call.failed:
                item += " - failed"
            if plan and plan[-1].startswith(item.split(" - ")[0]):
                if not plan[-1].endswith(" (repeated)"):
                    plan[-1] += " (repeated)"
                continue
            plan.append(item)
        elif role == "assistant" and step.content and "?" in step.content[-300:]:
            item = (
                "confirm with the user"
                if re.search(r"\bconfirm", step.content, re.I)
                else "ask the user"
            )
            if not plan or plan[-1] != item:
                plan.append(item)
    return plan[:60]


def failing_step(exp: ExperienceCreate, calls: list[Call] | None = None) -> int | None:
    """The step a failure is pinned on: the attributed step; else the last step with an error;
    else the last state-changing call; else the last call; None when the run has no steps."""
    mark = exp.attribution or getattr(exp, "tracer_attribution", None)
    if mark is not None and mark.step is not None and 0 <= mark.step < len(exp.steps):
        return mark.step
    calls = calls_of(exp.steps) if calls is None else calls
    failed = [c for n, c in enumerate(calls) if c.failed and not _recovered(calls, n)]
    if failed:
        return failed[-1].index
    replies = {c.reply_index for c in calls}
    errors = [s.index for s in exp.steps if s.error and s.index not in replies]
    if errors:
        return errors[-1]
    writes = [c.index for c in calls if is_state_changing(c.tool)]
    if writes:
        return writes[-1]
    return calls[-1].index if calls else (exp.steps[-1].index if exp.steps else None)


def _recovered(calls: list[Call], n: int) -> bool:
    """Whether a failed call was followed by a call of the same tool that worked."""
    return any(c.tool == calls[n].tool and not c.failed for c in calls[n + 1 :])


def _call_at(calls: list[Call], index: int) -> Call | None:
    """The call made at step ``index``, or the one whose reply that step is."""
    return next((c for c in calls if index in {c.index, c.reply_index}), None)


def failure_lessons(exp: ExperienceCreate, calls: list[Call]) -> list[str]:
    """For a failed run: the failing step, its error or result, and the traced cause."""
    index = failing_step(exp, calls)
    if index is None:
        return []
    mark = exp.attribution or getattr(exp, "tracer_attribution", None)
    call = _call_at(calls, index)
    if call is None:
        step = exp.steps[index]
        who = step.agent or step.role or "agent"
        lesson = f"Failing step {index} ({who} message): {clip(step.content or step.error, 200)}"
    else:
        lesson = f"Failing step {index}: {call.short(200)} -> {call.outcome_text(200)}"
    lessons = [lesson]
    if mark is not None and mark.step is not None and mark.reason:
        lessons.append(
            f"Cause ({mark.method}, confidence {mark.confidence:.2f}): {clip(mark.reason, 300)}"
        )
        if mark.corrected:
            lessons.append(f"Should have been: {clip(mark.corrected, 240)}")
    return lessons


def recovery_lessons(calls: list[Call]) -> list[str]:
    """For any run: errors it met and what the agent did next that worked."""
    out: list[str] = []
    for n, call in enumerate(calls):
        if not call.failed:
            continue
        later = [c for c in calls[n + 1 :] if not c.failed]
        retry = next((c for c in later if c.tool == call.tool), None)
        after = retry or next(iter(later), None)
        if after is None:
            continue
        diff = _arg_diff(call, after) if retry is not None else None
        if retry is not None and diff is None:
            continue  # the same call again: nothing to learn
        text = f"When {call.tool} fails ({call.outcome_text(100)}), " + (
            f"retry with {diff[1]} (not {diff[0]})" if diff else f"{after.short(120)} worked"
        )
        if text not in out:
            out.append(text)
    return out[:4]


def repair_lessons(failure: ExperienceCreate, repair: ExperienceCreate) -> list[str]:
    """ "Instead of X, do Y" from the failure and a successful run of the same task: the first
    aligned pair of calls that differ (in tool or arguments), from the failing step on."""
    ours, theirs = calls_of(failure.steps), calls_of(repair.steps)
    if not theirs:
        return []
    index = failing_step(failure, ours)
    at = next((n for n, c in enumerate(ours) if index in {c.index, c.reply_index}), None)
    if at is None and index is not None:  # a message step: the first call after it
        at = next((n for n, c in enumerate(ours) if c.index > index), 0)
    matcher = difflib.SequenceMatcher(
        a=[c.tool for c in ours], b=[c.tool for c in theirs], autojunk=False
    )
    aligned: list[tuple[int | None, int | None]] = []
    for _tag, i1, i2, j1, j2 in matcher.get_opcodes():
        width = max(i2 - i1, j2 - j1)
        for k in range(width):
            i = i1 + k if i1 + k < i2 else None
            j = j1 + k if j1 + k < j2 else None
            aligned.append((i, j))
    position = next((n for n, (i, _) in enumerate(aligned) if i is not None and i >= (at or 0)), 0)
    sources = (call_bindings(failure, ours), call_bindings(repair, theirs))
    for i, j in aligned[position:] + aligned[:position]:
        lesson = _contrast(ours, theirs, i, j, sources)
        if lesson:
            return [lesson]
    return []


def _contrast(
    ours: list[Call],
    theirs: list[Call],
    i: int | None,
    j: int | None,
    sources: tuple[list[dict[str, str]], list[dict[str, str]]] | None = None,
) -> str | None:
    if i is None and j is not None:
        return f"Instead of skipping it, do {theirs[j].short(160)}"
    if j is None and i is not None:
        return (
            f"Instead of {ours[i].short(160)}, skip it: the successful run did not call "
            f"{ours[i].tool} there"
        )
    if i is None or j is None:
        return None
    mine, good = ours[i], theirs[j]
    if mine.tool != good.tool:
        return f"Instead of {mine.short(160)}, do {good.short(160)}"
    if sources is None:
        diff = _arg_diff(mine, good)
    else:
        diff = _arg_diff(mine, good, sources[0][i], sources[1][j])
    if diff:
        return f"Instead of {mine.tool}({diff[0]}), do {good.tool}({diff[1]})"
    return None


def _leaves(value: Any, path: str, out: dict[str, Any], depth: int = 0) -> None:
    if depth < 4 and isinstance(value, Mapping):
        for k, v in value.items():
            _leaves(v, f"{path}.{k}", out, depth + 1)
    elif depth < 4 and isinstance(value, list) and value:
        for n, v in enumerate(value):
            _leaves(v, f"{path}[{n}]", out, depth + 1)
    else:
        out[path] = value


def _arg_diff(
    mine: Call,
    good: Call,
    my_sources: Mapping[str, str] | None = None,
    good_sources: Mapping[str, str] | None = None,
) -> tuple[str, str] | None:
    """The arguments (down to the nested values) where two calls differ, as two texts. With the
    calls' bindings, a value each run took from its own user counts as the same (it is the task's
    own data), and each differing value says where it came from when the sources differ."""
    ours: dict[str, Any] = {}
    theirs: dict[str, Any] = {}
    for k, v in mine.args.items():
        _leaves(v, str(k), ours)
    for k, v in good.args.items():
        _leaves(v, str(k), theirs)
    my_sources, good_sources = my_sources or {}, good_sources or {}

    def top(path: str) -> str:
        return re.split(r"[.\[]", path, maxsplit=1)[0]

    keys = [
        k
        for k in dict.fromkeys([*ours, *theirs])
        if ours.get(k) != theirs.get(k)
        and not (my_sources.get(top(k)) == good_sources.get(top(k)) == "user")
    ]
    if not keys:
        return None

    def text(values: dict[str, Any], sources: Mapping[str, str], other: Mapping[str, str]) -> str:
        parts = []
        for k in keys[:4]:
            where = sources.get(top(k))
            mark = f" [{where}]" if where and where != other.get(top(k)) else ""
            parts.append(f"{k}={_value_text(values.get(k))}{mark}")
        return ", ".join(parts)

    return text(ours, my_sources, good_sources), text(theirs, good_sources, my_sources)


def distill(
    experience: ExperienceCreate, *, repairs: Sequence[ExperienceCreate] = ()
) -> Distillation:
    """Distill one experience offline (no model): strategy, plan and lessons.

    Args:
        experience: the run; its ``attribution`` (traced or labelled) is the cause of a failure.
        repairs: successful runs linked to it by ``repaired_by`` (for "instead of X, do Y").
    Returns:
        a :class:`Distillation`; ``strategy_text()`` renders the strategy.
    """
    steps = experience.steps
    calls = calls_of(steps)
    points = _points(calls, call_bindings(experience, calls))
    lessons: list[str] = []
    if experience.outcome in {Outcome.failure, Outcome.partial}:
        lessons += failure_lessons(experience, calls)
        for repair in repairs[:2]:
            lessons += [x for x in repair_lessons(experience, repair) if x not in lessons]
    lessons += [x for x in recovery_lessons(calls) if x not in lessons]
    return Distillation(
        goal=experience.task.strip().split("\n", 1)[0],
        points=points,
        checks=_checks(calls, steps, points),
        plan=_plan(calls, steps),
        lessons=[clip(x, 600) for x in lessons],
    )


def failure_facts(steps: Sequence[Step]) -> list[str]:
    """What a failed run's log says went wrong, before any tracing or distillation: the error of
    the last failing step, and the last tool call with its result; one line each."""
    calls = calls_of(steps)
    out: list[str] = []
    failed = [c for c in calls if c.failed]
    bare = [s for s in steps if s.error and _call_at(calls, s.index) is None]
    if failed and (not bare or failed[-1].index > bare[-1].index):
        bad = failed[-1]
        where = bad.reply_index if bad.reply_index is not None else bad.index
        out.append(f"Error at step {where} ({bad.tool}): {bad.outcome_text(200)}")
    elif bare:
        out.append(f"Error at step {bare[-1].index}: {clip(bare[-1].error, 200)}")
    if calls:
        last = calls[-1]
        out.append(
            f"Last tool call (step {last.index}): {last.short(160)} -> {last.outcome_text(160)}"
        )
    return out


# -- provenance ---------------------------------------------------------------------------------
def digest(experience: ExperienceCreate, repairs: Sequence[ExperienceCreate] = ()) -> str:
    """A hash of what distillation reads: the task, outcome, steps, attribution and repairs."""
    body = {
        "v": VERSION,
        "task": experience.task,
        "outcome": experience.outcome.value,
        "steps": [
            s.model_dump(mode="json", exclude={"timestamp", "duration"}) for s in experience.steps
        ],
        "attribution": _mark(experience.attribution),
        "tracer": _mark(getattr(experience, "tracer_attribution", None)),
        "repairs": [
            [s.model_dump(mode="json", exclude={"timestamp", "duration"}) for s in r.steps]
            for r in repairs
        ],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _mark(mark: Attribution | None) -> dict[str, Any] | None:
    return None if mark is None else mark.model_dump(mode="json", exclude={"step_scores"})


def apply(
    current: Mapping[str, Any],
    result: Distillation,
    *,
    owned: Sequence[str],
    source_digest: str,
    repairs: Sequence[str] = (),
) -> dict[str, Any]:
    """The changes that store ``result`` in a record: only in fields that are empty or that
    distillation wrote before (``owned``); human-written text is never overwritten. Returns the
    field changes plus ``distilled`` (the provenance marker), or ``{}`` when nothing may change."""
    values: dict[str, Any] = {
        # a run without tool calls has no decision points to tell: no strategy is written
        "strategy": result.strategy_text() if result.points else None,
        "plan": result.plan,
        "lessons": result.lessons,
    }
    changes: dict[str, Any] = {}
    fields: list[str] = []
    for name in FIELDS:
        present = current.get(name)
        if name in owned or not present:
            if values[name]:
                changes[name] = values[name]
                fields.append(name)
            elif name in owned:
                changes[name] = None if name == "strategy" else []
    if not fields and not changes:
        return {}
    changes["distilled"] = {
        "source": DISTILLED,
        "method": result.method,
        "fields": fields,
        "digest": source_digest,
        "repairs": list(repairs),
    }
    return changes


def owned_fields(exp: Experience) -> list[str]:
    """The fields of a stored record that hold distilled (not human-written) text."""
    mark = exp.distilled
    return list(mark.fields) if mark is not None else []


__all__ = [
    "DISTILLED",
    "FIELDS",
    "Call",
    "DecisionPoint",
    "Distillation",
    "apply",
    "calls_of",
    "decision_tools",
    "digest",
    "distill",
    "failing_step",
    "failing_tool",
    "failure_facts",
    "is_state_changing",
    "owned_fields",
    "point_text",
]
