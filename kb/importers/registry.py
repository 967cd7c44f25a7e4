"""The formats, in detection order, and what detection says when nothing matches.

Detection runs every format's explicit shape check in order and takes the first that matches; the
checks are written so that at most one matches a real record (the order only settles the rare
overlaps: native Step lists before chat messages, Anthropic requests before OpenAI chat). A record
no format matches is refused with the formats tried and the closest one, with what it lacked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kb.errors import ImportFailed
from kb.importers import (
    anthropic,
    langsmith,
    multiagent,
    native,
    openai_chat,
    openai_responses,
    openhands,
    otel,
    smolagents,
    swe_agent,
)
from kb.importers.base import MATCH, Check, Format, miss
from kb.models import ExperienceCreate

KB_TYPES = {"meta", "experience", "skill", "edge", "event", "validation"}


def _check_kb(record: Any) -> Check:
    if not isinstance(record, Mapping) or record.get("type") not in KB_TYPES:
        return miss("a kb export line {type, record}")
    if "record" in record or "kb_export" in record:
        return MATCH
    return miss("a kb export line needs record (or kb_export on the meta line)", 0.7)


def _check_labels(record: Any) -> Check:
    if isinstance(record, Mapping) and "trajectory_id" in record:
        if "failures" in record:
            return MATCH
        return miss("a failure label needs failures next to trajectory_id", 0.7)
    return miss("a failure label {trajectory_id, failures}")


KB = Format("kb", "the store's lossless export (imported by the service)", _check_kb, None)
LABELS = Format(
    "labels",
    "failure labels {trajectory_id, failures} (imported by the service)",
    _check_labels,
    None,
)

REGISTRY: dict[str, Format] = {}


def register(fmt: Format, *, before: str | None = None) -> None:
    """Add a format (a third party's too); ``before`` puts its check ahead of another's."""
    if fmt.name in REGISTRY or fmt.name in {"auto", "unknown"}:
        raise ValueError(f"format {fmt.name!r} is already registered")
    if before is None:
        REGISTRY[fmt.name] = fmt
        return
    if before not in REGISTRY:
        raise ValueError(f"no format {before!r} to register {fmt.name!r} before")
    items = list(REGISTRY.items())
    at = [name for name, _ in items].index(before)
    items.insert(at, (fmt.name, fmt))
    REGISTRY.clear()
    REGISTRY.update(items)


for _fmt in (
    KB,
    LABELS,
    native.FORMAT,
    swe_agent.FORMAT,
    openhands.FORMAT,
    multiagent.FORMAT,
    smolagents.FORMAT,
    langsmith.FORMAT,
    otel.FORMAT,
    openai_responses.FORMAT,
    anthropic.FORMAT,
    openai_chat.FORMAT,
):
    register(_fmt)


def names() -> tuple[str, ...]:
    """``auto`` and every registered format, the original six first."""
    first = ("native", "openai", "multiagent", "kb", "labels")
    return ("auto", *first, *(n for n in REGISTRY if n not in first))


def detect(record: Any) -> str:
    """The name of the first format whose shape check matches ``record``, else ``unknown``."""
    for fmt in REGISTRY.values():
        if fmt.check(record).ok:
            return fmt.name
    return "unknown"


def _shape(record: Any) -> str:
    if isinstance(record, Mapping):
        keys = sorted(map(str, record))
        more = f" (+{len(keys) - 8} more)" if len(keys) > 8 else ""
        return f"an object with keys {', '.join(keys[:8])}{more}" if keys else "an empty object"
    if isinstance(record, list):
        kinds = sorted({type(item).__name__ for item in record})
        return f"a list of {len(record)} ({', '.join(kinds)})" if record else "an empty list"
    return f"a {type(record).__name__}"


def explain(record: Any) -> str:
    """Why no format took ``record``: the formats tried and the closest near miss."""
    verdicts = [(name, fmt.check(record)) for name, fmt in REGISTRY.items()]
    tried = ", ".join(name for name, _ in verdicts)
    name, best = max(verdicts, key=lambda item: item[1].score)
    head = f"unknown record shape ({_shape(record)}): tried {tried}"
    if best.score <= 0:
        return f"{head}; none came close (see docs/FORMATS.md)"
    return f"{head}; closest: {name} ({best.missing})"


def convert(record: Any, fmt: str, *, source: str, domain: str | None = None) -> ExperienceCreate:
    """Convert ``record`` with the format ``fmt`` (``auto``: detect it; ``unknown``: refuse it)."""
    if fmt == "auto":
        fmt = detect(record)
    if fmt == "unknown":
        raise ImportFailed(explain(record))
    found = REGISTRY.get(fmt)
    if found is None:
        raise ImportFailed(f"format must be one of {', '.join(names())}, not {fmt!r}")
    if found.convert is None:
        raise ImportFailed(
            f"{fmt} records are imported whole by KnowledgeBase.import_file, not one by one"
        )
    return found.convert(record, source=source, domain=domain)


def regroup(records: list[Any]) -> list[Any]:
    """The records of a file as the units their format imports (traces, merged runs)."""
    for fmt in REGISTRY.values():
        if fmt.regroup is not None and records and all(fmt.check(r).ok for r in records):
            return fmt.regroup(records)
    return records
