"""Turn files and in-memory trajectories of other shapes into experiences.

One module per format (``format="auto"`` picks by an explicit shape check; ``format=NAME``
forces one); see ``docs/FORMATS.md`` for every format's detection rule and field mapping:

* ``native``: :class:`kb.models.ExperienceCreate` JSON, or a list of Step dicts;
* ``openai``: OpenAI chat messages, ``{"messages": [...]}``, the tau-bench wrapper;
* ``multiagent``: ``{question, history: [{role, name?, content}]}`` (with human mistake labels);
* ``anthropic``: Anthropic Messages (HTTP recordings, request bodies, content-block messages);
* ``openai-responses``: Responses items, Response objects, Agents SDK ``RunState``;
* ``otel``: OpenTelemetry GenAI / OpenInference / Vercel AI spans (attribute maps, span lists,
  OTLP ``resourceSpans``);
* ``langsmith``: LangSmith runs (post/patch payloads, ``child_runs`` trees, run lists);
* ``swe-agent``: SWE-agent ``.traj`` runs and demonstrations;
* ``openhands``: OpenHands event lists and evaluation outputs;
* ``smolagents``: smolagents memory steps;
* ``kb`` and ``labels``: the lossless export and failure labels, imported by the service.

A file holds one record, a JSON list of records, or JSONL (one record per line); a JSON list that
is itself one trajectory (messages, events, spans, exchanges) is one record, and spans and runs
are regrouped into one record per trace. Source fields an importer cannot map are kept in the
record's ``artifacts``; those of a step in ``artifacts["steps"]["<index>"]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kb.errors import ImportFailed
from kb.importers import registry
from kb.importers.base import Check, Format
from kb.importers.multiagent import from_multiagent
from kb.importers.openai_chat import from_openai, looks_like_error, steps_from_messages
from kb.importers.registry import KB_TYPES, REGISTRY, detect, explain, register
from kb.importers.trajectory import trajectory_from_any
from kb.models import ExperienceCreate

FORMATS = registry.names()
MAX_FILE_BYTES = 512 * 1024 * 1024


def read_records(path: Path, *, skipped: list[dict[str, str]] | None = None) -> list[Any]:
    """The records of a JSON or JSONL file (a single object counts as one record).

    A JSONL line that is not JSON raises ``ImportFailed``, or, when a ``skipped`` list is
    given, is reported there and left out.
    """
    if not path.is_file():
        raise ImportFailed(f"{path}: no such file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ImportFailed(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ImportFailed(
            f"{path}: not UTF-8 text (byte {exc.start} cannot be decoded); convert it to UTF-8"
        ) from exc
    stripped = text.lstrip()
    if not stripped:
        return []
    if path.suffix == ".jsonl" or (stripped[0] == "{" and "\n{" in stripped.rstrip()):
        records = []
        # split on newlines only: str.splitlines also splits on U+2028, U+2029 and \x85, which
        # JSON strings may hold
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    records.append(_loads(line))
                except ValueError as exc:
                    message = f"{path}: line {number} is not valid JSON ({exc})"
                    if skipped is None:
                        raise ImportFailed(message) from exc
                    skipped.append({"record": f"line {number}", "error": message})
        return registry.regroup(records)
    try:
        data = _loads(text)
    except ValueError as exc:
        raise ImportFailed(f"{path}: not valid JSON ({exc})") from exc
    if isinstance(data, list) and data and detect(data) != "unknown":
        return registry.regroup([data])  # one trajectory: messages, events, spans, exchanges
    return registry.regroup(data if isinstance(data, list) else [data])


def _loads(text: str) -> Any:
    """JSON, with the errors a user can meet as ``ValueError`` naming the problem."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} at line {exc.lineno}") from exc
    except RecursionError:
        raise ValueError("nested too deeply") from None


def to_experience(
    record: Any, fmt: str, *, source: str, domain: str | None = None
) -> ExperienceCreate:
    """Convert one record with format ``fmt`` (``unknown`` is refused with the near miss);
    raises ``ValueError``/``ValidationError`` naming the field on bad input."""
    return registry.convert(record, fmt, source=source, domain=domain)


def iter_experiences(
    path: Path, fmt: str = "auto", *, domain: str | None = None
) -> Iterator[tuple[int, ExperienceCreate | ImportFailed]]:
    """Yield ``(record number, experience or the error for that record)`` for a file."""
    for number, record in enumerate(read_records(path), start=1):
        kind = detect(record) if fmt == "auto" else fmt
        try:
            yield number, to_experience(record, kind, source=str(path), domain=domain)
        except (ValueError, ValidationError, TypeError, KeyError) as exc:
            yield number, ImportFailed(f"{path}: record {number}: {describe(exc)}")


def describe(exc: Exception) -> str:
    """An error as one line: a validation error's first five problems with their fields."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err["loc"]) or "record"
            parts.append(f"{where}: {err['msg']}")
        more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        return "; ".join(parts) + more
    return str(exc)


__all__ = [
    "FORMATS",
    "KB_TYPES",
    "MAX_FILE_BYTES",
    "REGISTRY",
    "Check",
    "Format",
    "describe",
    "detect",
    "explain",
    "from_multiagent",
    "from_openai",
    "iter_experiences",
    "looks_like_error",
    "read_records",
    "register",
    "steps_from_messages",
    "to_experience",
    "trajectory_from_any",
]
