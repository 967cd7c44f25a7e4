"""Failure tracing: which agent and which step made a failed run fail, and why.

Back ends (``method``):

* ``heuristic``: hand-weighted signals read from the log (errors, loops, invented values, drift,
  divergence from successful runs, contradiction with the ground truth). CPU, no model.
* ``learned``: a logistic regression over the same per-step features; a default model trained on
  labelled tau-retail failures ships as plain JSON (``default_model.json``).
* ``llm``: an OpenAI-compatible chat endpoint, protocols ``all_at_once`` (``llm`` alone),
  ``step_by_step`` and ``binary_search`` (``llm:step_by_step``, ``llm:binary_search``).
* ``counterfactual``: replay a run of skills with one step replaced; the step whose replacement
  flips the outcome is to blame.

``auto`` picks counterfactual when the steps are skill runs and replay hooks are given, else llm when
configured, else learned when a model is available (the shipped one counts), else heuristic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kb.errors import Invalid
from kb.models import Attribution, ExperienceCreate
from kb.trace import counterfactual, heuristic, learned
from kb.trace import llm as llm_backend
from kb.trace.counterfactual import Replay, is_replayable
from kb.trace.features import Embed, step_text
from kb.trace.labels import FailureLabel, parse_labels, read_labels, split_by_trajectory
from kb.trace.learned import LearnedModel, default_model
from kb.trace.llm import PROTOCOLS, LLMConfig, LLMError

METHODS: tuple[str, ...] = (
    "auto",
    "heuristic",
    "learned",
    "llm",
    "llm:all_at_once",
    "llm:step_by_step",
    "llm:binary_search",
    "counterfactual",
)

__all__ = [
    "METHODS",
    "PROTOCOLS",
    "FailureLabel",
    "LLMConfig",
    "LLMError",
    "LearnedModel",
    "Replay",
    "attribute",
    "choose_method",
    "default_model",
    "parse_labels",
    "preference_pair",
    "read_labels",
    "split_by_trajectory",
    "to_mistake_json",
]


def choose_method(
    experience: ExperienceCreate,
    *,
    model: LearnedModel | None = None,
    llm: LLMConfig | None = None,
    replay: Replay | None = None,
) -> str:
    """The back end ``auto`` would use for this experience and these collaborators.

    A learned model is used only when the caller passes one (a store's own trained model): the
    shipped default saw 27 single-agent logs, and ``auto`` prefers the heuristic's general signals
    over it on logs of unknown shape. ``method="learned"`` still falls back to the default.
    """
    if replay is not None and is_replayable(experience):
        return "counterfactual"
    if llm is not None:
        return "llm"
    if model is not None:
        return "learned"
    return "heuristic"


def attribute(
    experience: ExperienceCreate,
    *,
    method: str = "auto",
    references: Sequence[ExperienceCreate] = (),
    model: LearnedModel | None = None,
    llm: LLMConfig | None = None,
    embed: Embed | None = None,
    replay: Replay | None = None,
) -> Attribution:
    """Attribute the failure of ``experience`` to one step and agent.

    Args:
        experience: the failed run (its ``steps`` are indexed by the result's ``step``).
        method: one of :data:`METHODS`.
        references: the nearest successful experiences (for divergence and counterfactual swaps).
        model: a trained :class:`LearnedModel` (``learned`` falls back to the shipped one).
        llm: the chat endpoint for the ``llm`` back ends.
        embed: texts -> vectors, for drift from the task (lexical overlap when None).
        replay: hooks to re-run skill steps, for ``counterfactual``.

    Returns:
        An :class:`Attribution` with a score for every step and the method used.
    """
    if method not in METHODS:
        raise Invalid(f"unknown tracing method {method!r}; choose one of {', '.join(METHODS)}")
    if not experience.steps:
        raise Invalid("the experience has no steps to attribute")
    if method == "auto":
        method = choose_method(experience, model=model, llm=llm, replay=replay)
    if method == "heuristic":
        return heuristic.attribute(experience, references=references, embed=embed)
    if method == "learned":
        return learned.attribute(experience, model=model, references=references, embed=embed)
    if method.startswith("llm"):
        protocol = method.partition(":")[2] or "all_at_once"
        return llm_backend.attribute(experience, llm, protocol=protocol)
    if replay is None:
        raise Invalid("counterfactual tracing needs replay hooks (run_step and judge)")
    result = counterfactual.attribute(experience, replay, references=references)
    if result.step is None:  # nothing flipped: say so, but still point somewhere
        fallback = heuristic.attribute(experience, references=references, embed=embed)
        return fallback.model_copy(
            update={
                "reason": f"{result.reason}; heuristic guess: {fallback.reason}",
                "confidence": min(fallback.confidence, 0.3),
                "method": "counterfactual+heuristic",
            }
        )
    return result


def to_mistake_json(experience: ExperienceCreate, attribution: Attribution) -> dict[str, Any]:
    """The attribution in the multi-agent convention: step = 0-based position in the history."""
    agent = attribution.agent
    if agent is None and attribution.step is not None and attribution.step < len(experience.steps):
        step = experience.steps[attribution.step]
        agent = step.agent or step.role
    return {
        "mistake_agent": agent,
        "mistake_step": attribution.step,
        "reason": attribution.reason,
        "confidence": attribution.confidence,
        "method": attribution.method,
    }


def preference_pair(
    failure: ExperienceCreate,
    attribution: Attribution,
    success: ExperienceCreate | None = None,
    *,
    context_steps: int = 6,
) -> dict[str, Any] | None:
    """A (task, context, wrong step, corrected step) record for preference training.

    The corrected step is ``attribution.corrected`` when known, else the step of ``success`` that
    aligns with the wrong one (same position among the acting steps). None when neither exists.
    """
    index = attribution.step
    if index is None or not 0 <= index < len(failure.steps):
        return None
    wrong = failure.steps[index]
    corrected = attribution.corrected
    if corrected is None and success is not None:
        corrected = _aligned_text(failure, index, success)
    if not corrected:
        return None
    context = [
        {"index": s.index, "agent": s.agent or s.role, "text": step_text(s)[:2000]}
        for s in failure.steps[max(0, index - context_steps) : index]
    ]
    return {
        "task": failure.task,
        "context": context,
        "wrong_step": step_text(wrong),
        "corrected_step": corrected,
        "agent": attribution.agent or wrong.agent or wrong.role,
        "step": index,
        "method": attribution.method,
        "reason": attribution.reason,
        "source_id": failure.provenance.source_id,
        "success_id": success.provenance.source_id if success is not None else None,
    }


def _aligned_text(failure: ExperienceCreate, index: int, success: ExperienceCreate) -> str | None:
    import difflib

    from kb.trace.features import role_of

    def acting(e: ExperienceCreate) -> list[int]:
        return [s.index for s in e.steps if role_of(s) == "actor"]

    ours, theirs = acting(failure), acting(success)
    if index not in ours or not theirs:
        return None

    def key(e: ExperienceCreate, i: int) -> str:
        s = e.steps[i]
        return s.tool or (s.content or "")[:40]

    matcher = difflib.SequenceMatcher(
        a=[key(failure, i) for i in ours], b=[key(success, i) for i in theirs], autojunk=False
    )
    position = ours.index(index)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if i1 <= position < i2 and tag != "delete":
            j = min(j1 + (position - i1), j2 - 1)
            text = step_text(success.steps[theirs[j]])
            return text if text != step_text(failure.steps[index]) else None
    return None
