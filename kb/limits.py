"""Size limits of one record, the same on every path a record takes (SDK, CLI, MCP, importers).

One definition, checked by :func:`check_record` before anything is embedded or written:

========================  ===========  ==================================================
limit                     default      what it bounds
========================  ===========  ==================================================
``RECORD_BYTES``          32 MiB       the JSON of one record (UTF-8 bytes)
``ARTIFACTS_BYTES``       4 MiB        the JSON of a record's ``artifacts``
``DEPTH``                 32           nesting of objects and arrays anywhere in a record
``STEPS``                 2,000        steps in one experience
``STEP_TEXT_CHARS``       1,000,000    characters of one step's ``content``, ``result`` or
                                       ``error`` (``KB_MAX_STEP_CHARS``)
========================  ===========  ==================================================

A transport may hold records to a lower total: the MCP server passes its request cap
(``mcp_server.server.MAX_REQUEST_BYTES``, 8 MiB) as ``max_bytes``, so a record that an HTTP
client cannot send is refused over stdio too, with the same message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kb.config import Settings
from kb.errors import Invalid

MiB = 1024 * 1024

RECORD_BYTES = 32 * MiB
"""UTF-8 bytes of the JSON of one record (an experience, a skill, run parameters)."""
ARTIFACTS_BYTES = 4 * MiB
"""UTF-8 bytes of the JSON of a record's ``artifacts`` (files, unmapped source fields)."""
DEPTH = 32
"""Nesting of objects and arrays in a record (a step's ``args``, ``artifacts``, a schema)."""
STEPS = 5_000
"""Steps in one experience (``steps``, a ``trajectory``): long agent runs (OpenHands, SWE-agent)
reach hundreds."""
STEP_TEXT_CHARS: int = Settings.model_fields["max_step_chars"].default
"""Characters of one step's ``content``, ``result`` or ``error`` (1,000,000): the default of
``KB_MAX_STEP_CHARS``, which a store may set otherwise (pass it as ``step_chars``)."""

_STEP_TEXT = ("content", "result", "error")


def json_size(value: Any) -> int:
    """UTF-8 bytes of ``value`` as compact JSON (dates and other objects as strings)."""
    return len(
        json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    )


def depth(value: Any) -> int:
    """How deeply objects and arrays nest in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        if level > DEPTH:  # deep enough to refuse; no need to walk the rest
            return level
        stack.extend((child, level) for child in children)
    return deepest


def check_record(
    data: Mapping[str, Any],
    *,
    what: str = "the record",
    max_bytes: int | None = None,
    step_chars: int | None = None,
) -> None:
    """Refuse a record over a limit with :class:`~kb.errors.Invalid` naming the limit.

    Args:
        data: the record as a mapping (an experience, a skill, parameters); a model's
            ``model_dump()`` works.
        what: how the message names it ("the experience", "experience 3 of file.jsonl").
        max_bytes: a lower cap on the whole record than :data:`RECORD_BYTES` (a transport's).
        step_chars: the store's ``max_step_chars`` when it differs from :data:`STEP_TEXT_CHARS`.
    """
    step_limit = STEP_TEXT_CHARS if step_chars is None else step_chars
    if not isinstance(data, Mapping):
        raise Invalid(f"{what} must be a JSON object, not {type(data).__name__}")
    nesting = depth(data)
    if nesting > DEPTH:
        raise Invalid(
            f"{what} nests objects and arrays more than {DEPTH} levels deep (limit DEPTH); "
            "flatten it"
        )
    steps = data.get("steps")
    if isinstance(steps, list | tuple):
        if len(steps) > STEPS:
            raise Invalid(
                f"{what} has {len(steps)} steps; the limit is {STEPS} (STEPS): record the run "
                "in parts or drop repeated steps"
            )
        for number, step in enumerate(steps):
            if not isinstance(step, Mapping):
                continue
            for field in _STEP_TEXT:
                text = step.get(field)
                if isinstance(text, str) and len(text) > step_limit:
                    raise Invalid(
                        f"{what}: steps[{number}].{field} is {len(text)} characters; the limit is "
                        f"{step_limit} (KB_MAX_STEP_CHARS): shorten it or keep the full text in a "
                        "file"
                    )
    artifacts = data.get("artifacts")
    if artifacts:
        size = json_size(artifacts)
        if size > ARTIFACTS_BYTES:
            raise Invalid(
                f"{what}: artifacts are {size} bytes of JSON; the limit is {ARTIFACTS_BYTES} "
                "(ARTIFACTS_BYTES): keep large files outside the store and record their paths"
            )
    limit = RECORD_BYTES if max_bytes is None else min(max_bytes, RECORD_BYTES)
    size = json_size(data)
    if size > limit:
        name = "RECORD_BYTES" if limit == RECORD_BYTES else "the server's request limit"
        raise Invalid(
            f"{what} is {size} bytes of JSON; the limit is {limit} ({name}): shorten long step "
            "contents and results, or split the record"
        )


__all__ = [
    "ARTIFACTS_BYTES",
    "DEPTH",
    "RECORD_BYTES",
    "STEPS",
    "STEP_TEXT_CHARS",
    "check_record",
    "depth",
    "json_size",
]
