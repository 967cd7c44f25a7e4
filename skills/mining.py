"""Mine draft skills from successful trajectories (WebXSkill, SkillFoundry).

A candidate is a contiguous run of tool calls that recurs in at least ``min_support`` distinct
traces. Only closed patterns are kept: a pattern is dropped when a longer pattern containing it
occurs in exactly the same traces. Arguments are generalised across occurrences: a value that
never varies stays a constant; one that varies becomes a typed parameter; a value that repeats
an argument of an earlier step of the same occurrence is bound to that step's parameter, and one
that appears in an earlier step's result is marked as taken from that result (dataflow).

Candidates are guided drafts: the call sequence is in the step guidance and, machine-readable,
in ``Candidate.template`` (``[{"tool": ..., "args": {"order_id": "{order_id}", ...}}]``).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skills.errors import SkillError
from skills.format import slugify

__all__ = ["Candidate", "Trace", "coverage", "mine"]

Trace = tuple[str, Sequence[Mapping[str, Any]]]
"""(experience id, the tool-call steps in order: ``{"tool", "args", "result"?, "content"?}``)."""

_MISSING = object()
_MAX_DESCRIPTION = 1000


@dataclass
class Candidate:
    """A mined draft skill and the evidence for it."""

    skill: dict[str, Any]
    support: int
    source_ids: list[str]
    pattern: list[str]
    template: list[dict[str, Any]] = field(default_factory=list)
    occurrences: int = 0


@dataclass
class _Call:
    tool: str
    args: dict[str, Any]
    result: str
    repeats: int = 1


@dataclass
class _Slot:
    step: int
    key: str
    values: list[Any]  # one per occurrence, _MISSING where absent
    kind: str = "param"  # const | param | bound | derived
    name: str = ""
    source_step: int = -1
    source: _Slot | None = None


def _calls(trace_id: str, steps: Sequence[Mapping[str, Any]]) -> list[_Call]:
    calls: list[_Call] = []
    for step in steps:
        tool = step.get("tool")
        if not isinstance(tool, str) or not tool:
            continue
        args = step.get("args")
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            raise SkillError(f"trace {trace_id!r}: args of a {tool!r} call must be a mapping")
        raw = step.get("result")
        if raw is None:
            raw = step.get("content")
        text = raw if isinstance(raw, str) else "" if raw is None else json.dumps(raw, default=str)
        if calls and calls[-1].tool == tool:
            # A run of the same tool (one call per order, per item...) is one step done repeatedly:
            # mining it as N distinct steps would yield a near-duplicate skill per run length.
            calls[-1].repeats += 1
            calls[-1].result += "\n" + text
            continue
        calls.append(_Call(tool, dict(args), text))
    return calls


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return "string"


def _schema_type(values: Sequence[Any]) -> str | list[str]:
    types = {_json_type(v) for v in values}
    if "number" in types:
        types.discard("integer")
    return next(iter(types)) if len(types) == 1 else sorted(types)


def _in_text(value: Any, text: str) -> bool:
    needle = value if isinstance(value, str) else _canon(value)
    if len(needle) < 2 or isinstance(value, bool) or value is None:
        return False
    return re.search(r"(?<!\w)" + re.escape(needle) + r"(?!\w)", text) is not None


def _identifier(text: str) -> str:
    ident = re.sub(r"\W+", "_", text).strip("_") or "arg"
    return f"p_{ident}" if ident[0].isdigit() else ident


def _generalise(
    pattern: tuple[str, ...], occurrences: list[list[_Call]]
) -> tuple[list[_Slot], dict[str, Any]]:
    """Classify every (step, arg) slot, name the variables and build the parameters schema."""
    slots: list[_Slot] = []
    for j in range(len(pattern)):
        keys: dict[str, None] = {}
        for occ in occurrences:
            keys.update(dict.fromkeys(occ[j].args))
        for key in keys:
            values = [occ[j].args.get(key, _MISSING) for occ in occurrences]
            slots.append(_Slot(j, key, values))
    for slot in slots:
        present = [v for v in slot.values if v is not _MISSING]
        if len(present) == len(slot.values) and len({_canon(v) for v in present}) == 1:
            slot.kind = "const"
            continue
        for earlier in slots:
            if earlier.step >= slot.step or earlier.kind == "const":
                continue
            if all(
                v is _MISSING or (e is not _MISSING and _canon(e) == _canon(v))
                for v, e in zip(slot.values, earlier.values, strict=True)
            ):
                slot.kind, slot.source = "bound", earlier
                slot.source_step = earlier.step
                break
        else:
            for j in range(slot.step):
                if all(
                    v is _MISSING or _in_text(v, occ[j].result)
                    for v, occ in zip(slot.values, occurrences, strict=True)
                ):
                    slot.kind, slot.source_step = "derived", j
                    break
    variables = [s for s in slots if s.kind in ("param", "derived")]
    taken: set[str] = set()
    for slot in variables:
        clash = any(o.key == slot.key for o in variables if o is not slot)
        base = _identifier(f"{pattern[slot.step]}_{slot.key}" if clash else slot.key)
        name, n = base, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        slot.name = name
        taken.add(name)
    for slot in slots:
        if slot.kind == "bound" and slot.source is not None:
            slot.name = slot.source.name  # sources come earlier, so they are named already
    properties: dict[str, Any] = {}
    required: list[str] = []
    for slot in slots:
        if slot.kind != "param":
            continue
        present = [v for v in slot.values if v is not _MISSING]
        examples: list[Any] = []
        for v in present:
            if v not in examples and len(examples) < 3:
                examples.append(v)
        properties[slot.name] = {
            "type": _schema_type(present),
            "description": f"`{slot.key}` of `{pattern[slot.step]}` (step {slot.step + 1})",
            "examples": examples,
        }
        if len(present) == len(slot.values):
            required.append(slot.name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return slots, schema


def _render(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _build(
    pattern: tuple[str, ...],
    occurrences: list[list[_Call]],
    source_ids: list[str],
    tasks: Mapping[str, str],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    slots, parameters = _generalise(pattern, occurrences)
    template: list[dict[str, Any]] = []
    steps: list[str] = []
    for j, tool in enumerate(pattern):
        args: dict[str, Any] = {}
        shown: list[str] = []
        for slot in (s for s in slots if s.step == j):
            if slot.kind == "const":
                args[slot.key] = slot.values[0]
                shown.append(f"{slot.key}={_render(slot.values[0])}")
                continue
            args[slot.key] = f"{{{slot.name}}}"
            note = ""
            if slot.kind == "derived":
                note = f" (from the result of step {slot.source_step + 1})"
            elif slot.kind == "bound":
                note = f" (same value as in step {slot.source_step + 1})"
            shown.append(f"{slot.key}={{{slot.name}}}{note}")
        template.append({"tool": tool, "args": args})
        with_args = f" with {', '.join(shown)}" if shown else " with no arguments"
        repeated = sum(occurrence[j].repeats > 1 for occurrence in occurrences)
        again = (
            f" Repeat it once per item as needed ({repeated} of {len(occurrences)} runs did)."
            if repeated
            else ""
        )
        steps.append(f"Call `{tool}`{with_args}.{again}")
    chain = " → ".join(f"`{t}`" for t in pattern)
    names = list(parameters["properties"])
    description = f"Reusable tool-call sequence: {chain}."
    if names:
        description += f" Parameters: {', '.join(names)}."
    example = next((tasks[i] for i in source_ids if tasks.get(i)), None)
    scope = (
        f"Use when a task needs {', then '.join(f'`{t}`' for t in pattern)}; "
        f"seen in {len(source_ids)} successful runs"
    )
    scope += f", e.g. task: {example.strip()[:300]}" if example else "."
    skill = {
        "name": _pattern_name(pattern),
        "description": description[:_MAX_DESCRIPTION],
        "version": 1,
        "scope": scope,
        "parameters": parameters,
        "returns": {},
        "steps": steps,
        "program": None,
        "mode": "guided",
        "environment": {},
        "tests": [],
        "tags": ["mined"],
        "domain": None,
        "status": "draft",
        "provenance": {"source": "mined"},
    }
    return skill, template


def _pattern_name(pattern: Sequence[str]) -> str:
    """``a-then-b-then-c``; when that passes 64 characters, ``a-to-c-in-N-steps``, so the
    distinguishing last step survives the cut."""
    full = slugify("-then-".join(pattern))
    if len("-then-".join(pattern)) <= 64:
        return full
    return slugify(f"{pattern[0]}-to-{pattern[-1]}-in-{len(pattern)}-steps")


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        suffix = f"-{n}"
        candidate = name[: 64 - len(suffix)].rstrip("-") + suffix
        n += 1
    taken.add(candidate)
    return candidate


def mine(
    traces: Sequence[Trace],
    *,
    tasks: Mapping[str, str] | None = None,
    min_support: int = 2,
    min_length: int = 2,
    max_length: int = 6,
    max_candidates: int = 50,
    progress: Callable[[int], None] | None = None,
) -> list[Candidate]:
    """Mine closed, recurring tool-call sequences as guided draft skills.

    Args:
        traces: (experience id, tool-call steps) pairs, typically from successful runs.
        tasks: optional task text per experience id, quoted in the scope sentence.
        min_support: least number of distinct traces a pattern must occur in.
        min_length, max_length: bounds on the number of calls in a pattern.
        max_candidates: keep this many, best first by support × length.
        progress: called with the number of traces processed so far, after each trace.

    Returns:
        Candidates, best first, each with a ``SkillCreate``-shaped ``skill`` dict (unique slug
        names) and its support, source ids, tool pattern and call template.
    """
    if min_support < 1 or min_length < 1 or max_length < min_length or max_candidates < 0:
        raise SkillError(
            "mine needs min_support >= 1, min_length >= 1 and max_length >= min_length"
        )
    calls = [_calls(tid, steps) for tid, steps in traces]
    ids = [tid for tid, _ in traces]
    seen: dict[tuple[str, ...], list[tuple[int, int]]] = defaultdict(list)
    for t, trace_calls in enumerate(calls):
        tools = [c.tool for c in trace_calls]
        for n in range(min_length, max_length + 1):
            for start in range(len(tools) - n + 1):
                seen[tuple(tools[start : start + n])].append((t, start))
        if progress is not None:
            progress(t + 1)
    support = {
        pattern: frozenset(ids[t] for t, _ in occ)
        for pattern, occ in seen.items()
        if len({ids[t] for t, _ in occ}) >= min_support
    }
    closed = set(support)
    for pattern, sup in support.items():
        if len(pattern) > min_length:
            for sub in (pattern[:-1], pattern[1:]):
                if support.get(sub) == sup:
                    closed.discard(sub)
    ranked = sorted(closed, key=lambda p: (-len(support[p]) * len(p), -len(support[p]), p))
    out: list[Candidate] = []
    taken: set[str] = set()
    for pattern in ranked[:max_candidates]:
        occurrences = [calls[t][s : s + len(pattern)] for t, s in seen[pattern]]
        source_ids = list(dict.fromkeys(ids[t] for t, _ in seen[pattern]))
        skill, template = _build(pattern, occurrences, source_ids, tasks or {})
        skill["name"] = _unique_name(skill["name"], taken)
        out.append(
            Candidate(
                skill=skill,
                support=len(source_ids),
                source_ids=source_ids,
                pattern=list(pattern),
                template=template,
                occurrences=len(occurrences),
            )
        )
    return out


def _contains(tools: Sequence[str], pattern: Sequence[str]) -> bool:
    n = len(pattern)
    return any(list(tools[i : i + n]) == list(pattern) for i in range(len(tools) - n + 1))


def coverage(candidates: Sequence[Candidate], traces: Sequence[Trace]) -> float:
    """Share of traces (0..1) containing at least one candidate's pattern; 0.0 for no traces."""
    if not traces:
        return 0.0
    hits = 0
    for tid, steps in traces:
        tools = [c.tool for c in _calls(tid, steps)]
        if any(_contains(tools, c.pattern) for c in candidates):
            hits += 1
    return hits / len(traces)
