"""Small curation helpers for the skill library: signatures, versions, pruning."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["bump_version", "parameter_signature", "should_prune"]


def parameter_signature(parameters_schema: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Sorted ``(name, type)`` pairs of a parameters JSON Schema, to spot equivalent skills.

    A list of types is joined with ``|`` in sorted order; a property without a type is ``any``.
    """
    props = parameters_schema.get("properties") or {}
    pairs = []
    for name, spec in props.items():
        kind = spec.get("type", "any") if isinstance(spec, Mapping) else "any"
        if isinstance(kind, list):
            kind = "|".join(sorted(str(k) for k in kind))
        pairs.append((str(name), str(kind)))
    return tuple(sorted(pairs))


def bump_version(skill: Mapping[str, Any], *, reset_status: bool = True) -> dict[str, Any]:
    """A deep copy of ``skill`` with ``version`` + 1.

    With ``reset_status`` (the default) the copy is a ``draft`` again: a changed skill must be
    validated or approved anew.
    """
    bumped = copy.deepcopy(dict(skill))
    bumped["version"] = int(skill.get("version") or 1) + 1
    if reset_status:
        bumped["status"] = "draft"
    return bumped


def should_prune(
    uses: int,
    successes: int,
    failures: int,
    last_used_age_days: float | None,
    *,
    min_uses: int = 5,
    max_failure_rate: float = 0.5,
    max_idle_days: float = 90.0,
) -> str | None:
    """Why a skill should be pruned, or None to keep it.

    Args:
        uses: times the skill was retrieved or run (kept for callers' records; the rules use
            the reported outcomes).
        successes, failures: reported outcomes of those uses.
        last_used_age_days: days since the last use (None: never used).
        min_uses: the failure rate is judged only after this many reported outcomes.
        max_failure_rate: prune above this share of failures.
        max_idle_days: prune when unused for longer than this.
    """
    reported = successes + failures
    if reported >= min_uses and reported > 0 and failures / reported > max_failure_rate:
        return (
            f"failed {failures} of {reported} reported runs "
            f"({failures / reported:.0%} > {max_failure_rate:.0%})"
        )
    if last_used_age_days is not None and last_used_age_days > max_idle_days:
        return f"unused for {last_used_age_days:.0f} days (limit {max_idle_days:.0f})"
    return None
