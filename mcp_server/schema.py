"""What the tools accept, as agents see it: the one Step definition, compact input schemas, and
validation errors turned into one sentence that names the parameter, what was expected and an
example.

Arguments are validated by the tool functions' own signatures (pydantic), whatever the listing
says; the listing (``tools/list``) is kept small because every agent pays for it in every prompt:
optional values are plain types (never ``anyOf: [T, null]``), titles and length bounds are left
out (the limits are named in descriptions and enforced on the server), and the Step definition is
spelled out once, in ``record_experience``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fastmcp.tools.function_tool import FunctionTool
from mcp_types import Tool as MCPTool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kb.errors import Invalid
from kb.importers import trajectory_from_any
from kb.models import Step
from kb.retrieval import clip


class StepIn(BaseModel):
    """One step of a run, as an agent records it (index optional: assigned in order)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=lambda s: s.pop("description"))

    index: int | None = Field(None, ge=0, description="From 0 (optional).")
    agent: str | None = Field(None, max_length=200, description="Who acted.")
    kind: str | None = Field(
        None, max_length=50, description="message|tool_call|observation|error."
    )
    tool: str | None = Field(None, max_length=200, description="Tool called.")
    args: dict[str, Any] | None = Field(None, description="Its arguments.")
    content: str | None = Field(None, description="Message text.")
    result: str | None = Field(None, description="Tool output.")
    error: str | None = Field(None, description="Error text.")


def step_dicts(steps: Sequence[StepIn]) -> list[dict[str, Any]]:
    """Steps as the store takes them: set fields only, ``index`` filled in by position (a given
    one must be that position)."""
    out = []
    for position, step in enumerate(steps):
        data = step.model_dump(exclude_none=True)
        if data.setdefault("index", position) != position:
            raise Invalid(
                f"steps[{position}].index is {data['index']}; steps must be numbered 0, 1, 2, ... "
                "in order: leave index out and they are numbered by position"
            )
        out.append(data)
    return out


def any_steps(raw: Sequence[Any]) -> list[Step]:
    """Steps from what an agent sent: our step objects, or the messages, items, events or
    spans of any format the importers read (docs/FORMATS.md), through the same importers."""
    try:
        return kb_steps([StepIn.model_validate(item) for item in raw])
    except (ValidationError, Invalid):
        return trajectory_from_any(list(raw), source="mcp").steps


def kb_steps(steps: Sequence[StepIn]) -> list[Step]:
    """Steps as store ``Step`` objects (for ``refine``, which then needs no format sniffing)."""
    out = []
    for position, data in enumerate(step_dicts(steps)):
        try:
            out.append(Step.model_validate(data))
        except ValidationError as exc:
            problem = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in problem.get("loc", ()))
            raise Invalid(f"steps[{position}].{where}: {problem.get('msg')}") from exc
    return out


# -- the listing ---------------------------------------------------------------------------------
class ListedTool(FunctionTool):
    """A function tool listed without FastMCP's ``_meta`` (its tags; we use none) and without a
    title made from its name (the name says it already)."""

    def to_mcp_tool(self, **overrides: Any) -> MCPTool:
        return super().to_mcp_tool(**{"_meta": None, "title": None, **overrides})


_DROP = {
    "title",
    "maxLength",
    "minLength",
    "maxItems",
    "minItems",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "additionalProperties",
    "$schema",
}
_NULL = {"type": "null"}


def compact(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON Schema without what an agent does not need to call the tool right: ``anyOf`` with
    null becomes the plain type (absent means not given), titles, length and range bounds and
    ``additionalProperties`` go (the server enforces them and its errors name them)."""
    node = dict(schema)
    options = node.get("anyOf")
    if isinstance(options, list) and _NULL in options:
        rest = [o for o in options if o != _NULL]
        if len(rest) == 1:
            node = {**rest[0], **{k: v for k, v in node.items() if k != "anyOf"}}
            if node.get("default", ...) is None:
                del node["default"]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key in {"properties", "$defs"} and isinstance(value, Mapping):
            out[key] = {name: compact(sub) for name, sub in value.items()}
        elif key == "items" and isinstance(value, Mapping):
            out[key] = compact(value)
        elif key in {"anyOf", "oneOf", "allOf"} and isinstance(value, list):
            out[key] = [compact(sub) for sub in value]
        else:
            out[key] = value
    return out


# -- errors --------------------------------------------------------------------------------------
EXAMPLES: dict[str, Any] = {
    "query": "refund a damaged item",
    "task": "refund order 1042",
    "outcome": "failure",
    "experience_id": "exp_0190a1b2c3d4e5",
    "item_id": "exp_0190a1b2c3d4e5",
    "name": "csv-export",
    "success": True,
    "note": "the return window had passed",
    "reason": "wrong: the refund rule changed",
    "steps": [{"kind": "tool_call", "tool": "get_order", "args": {"id": 1042}}],
    "propose_skill.steps": ["open the table", "choose Export > CSV"],
    "trajectory": [{"kind": "tool_call", "tool": "get_order", "args": {"id": 1042}}],
    "lessons": ["check the return window first"],
    "plan": ["look up the order", "check the return window"],
    "tags": ["refund"],
    "params": {"table": "orders"},
    "parameters": {"type": "object", "properties": {"table": {"type": "string"}}},
    "tests": [{"name": "orders", "params": {"table": "orders"}, "expect": "ok"}],
    "score": 0.8,
}
_PLAIN = {
    "string": "text",
    "integer": 1,
    "number": 0.5,
    "boolean": True,
    "object": {},
    "array": [],
}
_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a JSON object",
    "array": "a list",
}


def _node(schema: Mapping[str, Any], path: Sequence[str | int]) -> Mapping[str, Any] | None:
    """The schema of the value at ``path`` (parameter, list positions, fields)."""
    node: Mapping[str, Any] | None = schema
    for part in path:
        if node is None:
            return None
        if isinstance(part, int):
            node = node.get("items")
        else:
            node = (node.get("properties") or {}).get(part)
        if node is not None and "anyOf" in node:
            node = next((o for o in node["anyOf"] if o != _NULL), node)
    return node


def _expected(node: Mapping[str, Any] | None) -> str:
    if node is None:
        return "a value"
    if "enum" in node:
        return "one of " + ", ".join(json.dumps(v) for v in node["enum"])
    kind = node.get("type")
    if kind == "array":
        items = node.get("items") or {}
        inner = items.get("type")
        if inner == "object":
            return "a list of objects"
        return f"a list of {inner}s" if inner else "a list"
    text = _TYPES.get(str(kind), "a value")
    bounds = [
        f"at least {node['minimum']}" if "minimum" in node else "",
        f"at most {node['maximum']}" if "maximum" in node else "",
        f"at most {node['maxLength']} characters" if "maxLength" in node else "",
    ]
    extra = " and ".join(b for b in bounds if b)
    return f"{text} {extra}" if extra else text


def _example(tool: str, name: str, node: Mapping[str, Any] | None) -> Any:
    for key in (f"{tool}.{name}", name):
        if key in EXAMPLES:
            return EXAMPLES[key]
    if node is None:
        return "..."
    if "enum" in node:
        return node["enum"][0]
    if "default" in node and node["default"] not in (None, [], {}):
        return node["default"]
    if node.get("type") == "array":
        inner = (node.get("items") or {}).get("type", "string")
        return [_PLAIN.get(str(inner), "text")]
    return _PLAIN.get(str(node.get("type")), "...")


def _where(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def explain(tool: str, error: ValidationError, schema: Mapping[str, Any]) -> str:
    """One sentence for the first problem of ``error``: which parameter, what was wrong, what is
    expected, an example. No URLs, no pydantic jargon."""
    problems = error.errors(include_url=False)
    first = problems[0]
    path = [p for p in first.get("loc", ()) if isinstance(p, str | int)]
    kind = first.get("type", "")
    where = _where(path) or "the arguments"
    top = str(path[0]) if path else ""
    node = _node(schema, path)
    more = f" ({len(problems) - 1} more problems after it)" if len(problems) > 1 else ""
    if kind in {"unexpected_keyword_argument", "extra_forbidden"}:
        parent = _node(schema, path[:-1]) or {}
        known = ", ".join(parent.get("properties") or {})
        what = "a field of a step" if len(path) > 1 else f"a parameter of {tool}"
        return f"{tool}: {where} is not {what}; use one of: {known}{more}."
    if kind in {"missing", "missing_argument", "missing_keyword_only_argument"}:
        return (
            f"{tool}: {where} is required; expected {_expected(node)}, for example "
            f"{json.dumps({top: _example(tool, top, _node(schema, path[:1]))})}{more}."
        )
    message = str(first.get("msg", "is not valid"))
    message = message[len("Input ") :] if message.startswith("Input ") else message
    message = message[len("Value error, ") :] if message.startswith("Value error, ") else message
    message = message[:1].lower() + message[1:]
    given = first.get("input")
    if isinstance(given, list):
        shown = f"a list of {len(given)}"
    elif isinstance(given, dict):
        shown = f"an object with {len(given)} fields"
    elif isinstance(given, str) and len(given) > 60:
        shown = f"{len(given)} characters"
    else:
        shown = clip(json.dumps(given, default=str, ensure_ascii=False), 60)
    return (
        f"{tool}: {where} {message} (got {shown}); expected {_expected(node)}, for example "
        f"{json.dumps({top: _example(tool, top, _node(schema, path[:1]))}, ensure_ascii=False)}{more}."
    )


__all__ = ["ListedTool", "StepIn", "compact", "explain", "step_dicts"]
