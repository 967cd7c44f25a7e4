"""Honest tracing answers: ``trace_failure`` says "unknown" rather than blame a step on too little
evidence, and never blames a system message.

The tracer's confidence is a share of the blame among the steps, so two messages with no error
between them still give one of them ~1.0. Until the tracer itself is calibrated (the tracer's own
work), the MCP answer is held to what the trajectory can support.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kb.models import Attribution

MIN_STEPS = 3
"""Non-system steps needed to blame one when no step recorded an error."""
UNKNOWN_CONFIDENCE = 0.2
"""The most confidence an "unknown" answer reports."""


def _is_system(step: Mapping[str, Any]) -> bool:
    return "system" in {step.get("role"), step.get("agent"), step.get("kind")}


def weak_evidence(steps: Sequence[Mapping[str, Any]]) -> str | None:
    """Why ``steps`` are too thin to blame one of them, or None when they can carry an answer."""
    visible = [s for s in steps if not _is_system(s)]
    errors = [s for s in visible if s.get("error") or s.get("kind") == "error"]
    if not visible:
        return "the trajectory has only system messages"
    if not errors and len(visible) < MIN_STEPS:
        return f"{len(visible)} step{'s' if len(visible) != 1 else ''} and no recorded error"
    return None


def honest(attribution: Attribution, steps: Sequence[Mapping[str, Any]]) -> Attribution:
    """``attribution``, or an "unknown" answer with low confidence when the evidence is weak or
    it blames a system message."""
    why = weak_evidence(steps)
    blamed = attribution.step
    if (
        why is None
        and blamed is not None
        and 0 <= blamed < len(steps)
        and _is_system(steps[blamed])
    ):
        why = f"step {blamed} is a system message, which no agent wrote"
    if why is None:
        return attribution
    return Attribution(
        agent=None,
        step=None,
        reason=(
            f"unknown: {why}, too little evidence to blame a step; record the steps that led to "
            "the failure (tool calls, errors) or add a human label (kb label)"
        ),
        confidence=min(attribution.confidence, UNKNOWN_CONFIDENCE),
        step_scores=attribution.step_scores,
        method=attribution.method,
    )


__all__ = ["honest", "weak_evidence"]
