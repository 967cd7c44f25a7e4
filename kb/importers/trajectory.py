"""One entry point for trajectories held in memory, whatever their shape."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from kb.errors import ImportFailed
from kb.importers import registry
from kb.models import ExperienceCreate


def plain(value: Any) -> Any:
    """JSON-like data from SDK objects: pydantic models (OpenAI/Anthropic SDK messages, kb
    Steps), smolagents memory steps (``.dict()``), dataclasses; lists and dicts recursively."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    to_dict = getattr(value, "dict", None)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(to_dict() if callable(to_dict) else dataclasses.asdict(value))
    return value


def trajectory_from_any(
    raw: Any, *, format: str = "auto", source: str | None = None
) -> ExperienceCreate:
    """Turn any importable in-memory trajectory into an experience.

    Args:
        raw: an :class:`ExperienceCreate` (returned as is); a list of raw OpenAI or Anthropic
            messages (extra keys such as ``refusal``/``annotations``/``index`` are fine), of
            Responses items, OpenHands events, smolagents memory steps or kb Steps; a dict of any
            format in ``docs/FORMATS.md``; SDK objects (pydantic models, dataclasses) of those;
            or the JSON text of any of them.
        format: ``auto`` (detect) or a format name to force one importer.
        source: recorded as ``provenance.imported_from`` (default ``"memory"``).

    Returns:
        The experience (not stored). Raises :class:`kb.errors.ImportFailed` with the formats
        tried and the closest near miss when nothing fits, or naming the field that is wrong.
    """
    if isinstance(raw, ExperienceCreate):
        return raw
    data = plain(raw)
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ImportFailed(f"trajectory: text that is not JSON ({exc.msg})") from exc
    if format != "auto" and format not in registry.REGISTRY:
        raise ImportFailed(f"format must be one of {', '.join(registry.names())}, not {format!r}")
    fmt = registry.detect(data) if format == "auto" else format
    try:
        return registry.convert(data, fmt, source=source or "memory")
    except ImportFailed:
        raise
    except (ValueError, ValidationError, TypeError, KeyError) as exc:
        from kb.importers import describe

        raise ImportFailed(f"trajectory ({fmt}): {describe(exc)}") from exc
