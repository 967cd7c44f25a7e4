"""What every importer shares: the format record, shape checks, and the step log they fill.

An importer is a :class:`Format`: a name, a shape ``check`` (explicit: which keys, which types), a
``convert`` to :class:`~kb.models.ExperienceCreate`, and optionally a ``regroup`` that turns the
records of a file into the units it imports (spans grouped by trace, runs merged by id).

Importers fill a :class:`StepLog` with :class:`Draft` steps. A source field that has no place in
:class:`~kb.models.Step` goes into the draft's ``extra``; the log returns those as
``artifacts["steps"]``, a dict keyed by the step index as a string (``"3": {...}``), so nothing is
dropped. Empty values (null, ``""``, ``[]``, ``{}``) carry nothing and are not kept, and ids that
only link a call to its result (``tool_call_id``, ``tool_use_id``, ...) are used for the linking.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kb.models import ExperienceCreate

JSONish = Any


# -- shape checks --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """The verdict of a shape check: a match, or how close it came (0 to 1) and what was missing."""

    ok: bool
    score: float = 0.0
    missing: str = ""


MATCH = Check(True, 1.0)


def miss(missing: str, score: float = 0.0) -> Check:
    """A failed check: ``score`` says how close the record came, ``missing`` what it lacked."""
    return Check(False, score, missing)


Convert = Callable[..., ExperienceCreate]


@dataclass(frozen=True)
class Format:
    """One importer: how to recognise a record and how to turn it into an experience."""

    name: str
    summary: str
    check: Callable[[Any], Check]
    convert: Convert | None
    """``convert(record, *, source, domain) -> ExperienceCreate``; None for formats the service
    imports itself (``kb``, ``labels``)."""
    regroup: Callable[[list[Any]], list[Any]] | None = None


# -- small helpers -------------------------------------------------------------------------------
def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict | tuple) and len(value) == 0)


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is an object, else an empty one (for optional nested objects)."""
    return value if isinstance(value, Mapping) else {}


def rest(record: Mapping[str, Any], mapped: Iterable[str]) -> dict[str, Any]:
    """The entries of ``record`` that were not mapped, empty values left out."""
    skip = set(mapped)
    return {k: v for k, v in record.items() if k not in skip and not is_empty(v)}


def parse_json(value: Any) -> Any:
    """A JSON document stored as a string (attributes, arguments), parsed; anything else as is."""
    if isinstance(value, str) and value[:1] in "[{" and value.rstrip()[-1:] in "]}":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def as_text(value: Any) -> str | None:
    """Text for a step field: strings as written, other values as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def as_args(value: Any, *, key: str = "_raw") -> dict[str, Any] | None:
    """Tool arguments as a dict: an object, a JSON object string, or ``{key: value}`` otherwise."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        if not value.strip():
            return {}
        parsed = parse_json(value)
        if isinstance(parsed, dict):
            return parsed
        if parsed is not value:
            return {"_value": parsed}
        return {key: value}
    return {"_value": value}


def text_of(value: Any) -> str | None:
    """The first non-empty string among ``value`` (a string) or the text of content parts."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, list):
        texts = [
            p if isinstance(p, str) else p.get("text") or p.get("content")
            for p in value
            if isinstance(p, str | Mapping)
        ]
        joined = "\n".join(t for t in texts if isinstance(t, str) and t.strip())
        return joined or None
    return None


def to_datetime(value: Any) -> datetime | None:
    """A timestamp from ISO text, epoch seconds/ms/us/ns, or a ``[seconds, nanos]`` pair."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) for v in value)
    ):
        return datetime.fromtimestamp(value[0] + value[1] / 1e9, UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            value = int(text)
        else:
            try:
                return datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
    if isinstance(value, int | float):
        number = float(value)
        if number > 1e17:
            number /= 1e9  # nanoseconds
        elif number > 1e14:
            number /= 1e6  # microseconds
        elif number > 1e11:
            number /= 1e3  # milliseconds
        try:
            return datetime.fromtimestamp(number, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def seconds_between(start: Any, end: Any) -> float | None:
    first, last = to_datetime(start), to_datetime(end)
    if first is None or last is None or (first.tzinfo is None) != (last.tzinfo is None):
        return None
    delta = (last - first).total_seconds()
    return delta if delta >= 0 else None


# -- the step log --------------------------------------------------------------------------------
@dataclass
class Draft:
    """A step before numbering; ``extra`` holds the source fields that Step has no place for."""

    kind: str = "message"
    role: str | None = None
    agent: str | None = None
    content: str | None = None
    tool: str | None = None
    args: dict[str, Any] | None = None
    result: str | None = None
    error: str | None = None
    timestamp: Any = None
    duration: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    link: str | None = None
    """The call id of a tool call (used to link its result; not stored)."""


class StepLog:
    """The steps of one experience, in order, with the links between calls and results."""

    def __init__(self) -> None:
        self.drafts: list[Draft] = []
        self._tool_of: dict[str, str] = {}
        self._called: set[str] = set()
        self._answered: set[str] = set()

    def __len__(self) -> int:
        return len(self.drafts)

    def add(self, draft: Draft) -> Draft:
        self.drafts.append(draft)
        return draft

    def call(self, draft: Draft, call_id: str | None) -> Draft:
        """Add a tool call; remember its id so that its result can name the tool."""
        draft.kind = draft.kind if draft.kind != "message" else "tool_call"
        draft.link = call_id
        if call_id:
            self._called.add(call_id)
            if draft.tool:
                self._tool_of[call_id] = draft.tool
        return self.add(draft)

    def result(self, draft: Draft, call_id: str | None) -> Draft:
        """Add a tool's result; its tool is taken from the call when the result does not say."""
        if call_id:
            self._answered.add(call_id)
            draft.tool = draft.tool or self._tool_of.get(call_id)
        if draft.kind == "message":
            draft.kind = "error" if draft.error else "observation"
        return self.add(draft)

    def called(self, call_id: str | None) -> bool:
        return bool(call_id) and call_id in self._called

    def answered(self, call_id: str | None) -> bool:
        return bool(call_id) and call_id in self._answered

    def open_call(self, tool: str | None) -> Draft | None:
        """The latest call of ``tool`` that has no result yet (for results that carry no id)."""
        for draft in reversed(self.drafts):
            if draft.kind in {"observation", "error"} and draft.tool == tool:
                return None
            if draft.kind == "tool_call" and draft.tool == tool:
                return draft
        return None

    def build(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """The steps as dicts (validated by ExperienceCreate) and the extras keyed by index."""
        steps: list[dict[str, Any]] = []
        extras: dict[str, dict[str, Any]] = {}
        for index, draft in enumerate(self.drafts):
            extra = dict(draft.extra)
            stamp = to_datetime(draft.timestamp)
            if stamp is None and draft.timestamp is not None:
                extra["timestamp"] = draft.timestamp
            step: dict[str, Any] = {
                "index": index,
                "kind": draft.kind,
                "role": draft.role,
                "agent": draft.agent,
                "content": draft.content,
                "tool": draft.tool,
                "args": draft.args,
                "result": draft.result,
                "error": draft.error,
                "timestamp": stamp,
                "duration": draft.duration,
            }
            steps.append({k: v for k, v in step.items() if v is not None})
            extra = {k: v for k, v in extra.items() if not is_empty(v)}
            if extra:
                extras[str(index)] = extra
        return steps, extras

    # -- what a log says about the run --------------------------------------------------------
    def first_user_text(self) -> str | None:
        for draft in self.drafts:
            if draft.role == "user" and draft.kind == "message" and draft.content:
                return draft.content
        return None

    def final_text(self) -> str | None:
        """The assistant's last message, if no tool call came after it."""
        for draft in reversed(self.drafts):
            if draft.kind == "tool_call":
                return None
            if draft.role == "assistant" and draft.kind == "message" and draft.content:
                return draft.content
        return None


def build_experience(
    log: StepLog,
    *,
    task: str | None,
    source: str,
    domain: str | None,
    source_id: Any = None,
    artifacts: Mapping[str, Any] | None = None,
    **fields: Any,
) -> ExperienceCreate:
    """Validate the experience a converter assembled (errors name the field, e.g. ``steps.4``)."""
    task = task if isinstance(task, str) and task.strip() else None
    if task is None:
        raise ValueError("task: no task text (no instruction and no user message)")
    steps, extras = log.build()
    kept = {k: v for k, v in (artifacts or {}).items() if not is_empty(v)}
    if extras:
        kept["steps"] = extras
    data: dict[str, Any] = {
        "task": task,
        "steps": steps,
        "artifacts": kept,
        "domain": domain or fields.pop("domain", None),
        "provenance": {
            "source": "import",
            "imported_from": source,
            "source_id": None if is_empty(source_id) else str(source_id),
        },
    }
    data.update({k: v for k, v in fields.items() if v is not None})
    return ExperienceCreate.model_validate({k: v for k, v in data.items() if v is not None})
