"""Failure tracing: which agent and which step made a failed run fail, and why.

Back ends (``method``):

* ``heuristic``: hand-weighted signals read from the log (errors, loops, invented values, drift,
  divergence from successful runs, contradiction with the ground truth). CPU, no model.
* ``learned``: a trained step scorer over those features, structural features and sentence
  embeddings of each step and its neighbours, with a per-agent model for blame by contribution and
  temperatures fitted on held-out data (:mod:`kb.trace.learned`, :mod:`kb.trace.fit`). The shipped
  one (``default_model.json``, ``python -m kb.trace.train_default``) is trained on faults injected
  into successful runs (:mod:`kb.trace.synth`) and fine-tuned on the tau-retail labels.
* ``llm``: an OpenAI-compatible chat endpoint, protocols ``all_at_once`` (``llm`` alone),
  ``step_by_step`` and ``binary_search`` (``llm:step_by_step``, ``llm:binary_search``).
* ``counterfactual``: replay a run of skills with one step replaced; the step whose replacement
  flips the outcome is to blame.

``auto`` picks counterfactual when the steps are skill runs and replay hooks are given, else llm when
configured, else learned when a model is given, else heuristic (:func:`preferred_model` says whether
the shipped model should be given).

Every back end: a run that succeeded (``outcome`` success, or, when the outcome is unknown, a final
answer equal to the ground truth) is not blamed (:func:`not_a_failure`), and the system prompt is
never blamed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from kb.errors import Invalid
from kb.models import Attribution, ExperienceCreate, Outcome
from kb.trace import counterfactual, heuristic, learned
from kb.trace import llm as llm_backend
from kb.trace.blame import shares as agent_shares
from kb.trace.counterfactual import Replay, is_replayable
from kb.trace.features import Embed, step_text
from kb.trace.fit import train
from kb.trace.labels import FailureLabel, parse_labels, read_labels, split_by_trajectory
from kb.trace.learned import LearnedModel, Trace, default_model
from kb.trace.llm import PROTOCOLS, LLMConfig, LLMError
from kb.trace.synth import FAULTS, SynthReport, read_jsonl, synthesize, write_jsonl
from kb.trace.teams import generate_team_logs

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
    "FAULTS",
    "METHODS",
    "PROTOCOLS",
    "FailureLabel",
    "LLMConfig",
    "LLMError",
    "LearnedModel",
    "Replay",
    "SynthReport",
    "Trace",
    "agent_shares",
    "attribute",
    "choose_method",
    "default_model",
    "explain",
    "generate_team_logs",
    "not_a_failure",
    "parse_labels",
    "preference_pair",
    "preferred_model",
    "read_jsonl",
    "read_labels",
    "split_by_trajectory",
    "synthesize",
    "to_mistake_json",
    "train",
    "write_jsonl",
]

ANSWER_RE = re.compile(
    r"(?:final answer|answer)(?:\s+(?:is|was))?\s*[:=]?\s*(.+?)\s*(?:$|\n)", re.IGNORECASE
)


def _norm(text: str) -> str:
    text = text.strip().strip("*`\"'").lower()
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = re.sub(r"\s+", " ", text).rstrip(" .")
    return re.sub(r"^(\d+)\.0+$", r"\1", text)


END_MARKERS = frozenset({"terminate", "done", "stop", "end", "exit", "finished"})


def _says_something(text: str) -> bool:
    """Not a bare end marker ("TERMINATE", "Done.", "###STOP###")."""
    return re.sub(r"[^a-z0-9]", "", text.lower()) not in END_MARKERS


def not_a_failure(experience: ExperienceCreate) -> str | None:
    """Why a run is not a failure to trace, or None when it is (or may be) one.

    A run is not blamed when its outcome is success, or when its outcome is unknown and its final
    answer equals the ground truth: the last message (end markers such as "TERMINATE" skipped),
    what follows its last colon, or what follows "final answer" / "the answer is" in one of the
    last three messages. An explicit failure is always traced.
    """
    if experience.outcome == Outcome.success:
        return "the run succeeded (outcome success): nothing to blame"
    if experience.outcome == Outcome.failure or not experience.ground_truth:
        return None
    truth = _norm(experience.ground_truth)
    if not truth:
        return None
    said = [s.content for s in experience.steps if s.content and _says_something(s.content)]
    final = said[-1] if said else ""
    candidates = {_norm(final)}
    if ":" in final:  # "Result for the user: 42"
        candidates.add(_norm(final.rsplit(":", 1)[1]))
    for text in said[-3:]:
        candidates |= {_norm(m) for m in ANSWER_RE.findall(text)}
    if truth in candidates:
        return "the final answer matches the ground truth: nothing to blame"
    return None


def _not_blamed(experience: ExperienceCreate, why: str, method: str) -> Attribution:
    return Attribution(
        agent=None,
        step=None,
        reason=why,
        confidence=0.0,
        step_scores=[0.0] * len(experience.steps),
        method=method,
    )


def preferred_model() -> LearnedModel | None:
    """The shipped model when its training recorded that it beat the heuristic on both checks
    (held-out synthetic faults and the tau-retail labels; ``meta["beats_heuristic"]``), for
    ``auto`` to use; else None."""
    model = default_model()
    if model is not None and model.is_text and model.meta.get("beats_heuristic"):
        return model
    return None


def explain(
    experience: ExperienceCreate,
    *,
    model: LearnedModel | None = None,
    references: Sequence[ExperienceCreate] = (),
    embed: Embed | None = None,
) -> Trace:
    """The trained tracer's full answer: attribution, step probabilities, agent shares.

    Args:
        experience: the run to trace.
        model: a format-2 model (default: the shipped one).
        references: successful runs of similar tasks (optional).
        embed: the sentence embedder (default: the model's own, loaded offline).
    """
    model = model or default_model()
    if model is None or not model.is_text:
        raise Invalid("explain needs a trained (format 2) tracer model")
    if not experience.steps:
        raise Invalid("the experience has no steps to attribute")
    why = not_a_failure(experience)
    if why is not None:
        return Trace(
            _not_blamed(experience, why, "learned"), [0.0] * len(experience.steps), {}, 0.0
        )
    return model.explain(experience, references=references, embed=embed)


def choose_method(
    experience: ExperienceCreate,
    *,
    model: LearnedModel | None = None,
    llm: LLMConfig | None = None,
    replay: Replay | None = None,
) -> str:
    """The back end ``auto`` would use for this experience and these collaborators.

    A learned model is used when the caller passes one: a store's own trained model, or the
    shipped one when :func:`preferred_model` returns it (its training recorded that it beats the
    heuristic on both evaluations). ``method="learned"`` falls back to the shipped model.
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
    why = not_a_failure(experience)
    if why is not None:
        return _not_blamed(experience, why, method)
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
