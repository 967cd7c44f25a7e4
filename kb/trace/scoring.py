"""From per-step scores to an :class:`Attribution` (shared by the scoring back ends)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kb.models import Attribution, ExperienceCreate
from kb.trace.features import FEATURES

DESCRIPTIONS: dict[str, str] = {
    "error_here": "the step reports an error",
    "error_next": "the tool result answering this step is an error",
    "repeat_call": "it repeats an earlier call with the same arguments (a loop)",
    "repeat_text": "it repeats an earlier message almost word for word (a loop)",
    "novel_args": "its arguments use values that appear nowhere earlier (possibly invented)",
    "novel_values": "it states numbers or ids that appear nowhere earlier",
    "drift": "it strays from the task",
    "ref_extra": "it calls a tool that successful runs of similar tasks never call",
    "ref_args_mismatch": "successful runs call this tool with other arguments",
    "ref_first_divergence": "here the run first departs from the closest successful run",
    "first_bad_call": "it is the first state-changing call that departs from the successful runs",
    "before_bad_call": "it is the message that triggered the first departing call",
    "answer_origin": "the wrong parts of the final answer first appear here",
    "claim_mismatch": "it states a value that contradicts the ground truth",
    "correction_next": "the next party objects to or corrects it",
    "refusal": "the agent gives up, refuses or hands off here",
    "is_write_call": "it changes state",
}


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    if scores.size == 0:
        return scores
    z = (scores - scores.max()) / max(temperature, 1e-6)
    e = np.exp(z)
    return np.asarray(e / e.sum())


def explain_step(
    contributions: np.ndarray | None, best: int, names: Sequence[str] = FEATURES
) -> str:
    """The largest positive contributions to a step's score, in words ("" when none is named)."""
    if contributions is None:
        return ""
    row = contributions[best]
    reasons: list[str] = []
    for j in np.argsort(-row)[:8]:
        name = names[int(j)]
        if row[j] > 0 and name in DESCRIPTIONS:
            reasons.append(DESCRIPTIONS[name])
        if len(reasons) == 3:
            break
    return "; ".join(reasons)


def attribution_from_scores(
    experience: ExperienceCreate,
    scores: np.ndarray,
    *,
    method: str,
    contributions: np.ndarray | None = None,
    temperature: float = 1.0,
) -> Attribution:
    """The attribution a score vector makes: the best step, its agent, a reason, the softmax
    probability as confidence, and every step's normalised score.

    The system prompt is never blamed, nor a tool's raw output while an agent or the user spoke.
    ``contributions`` (steps x features) explains the chosen step: its largest positive
    contributions are named in the reason.
    """
    from kb.trace.agents import agent_name
    from kb.trace.learned import calibrated, confidence_of

    steps = experience.steps
    if not steps:
        return Attribution(reason="the experience has no steps", method=method)
    probs = calibrated(experience, np.asarray(scores, dtype=np.float64), temperature)
    best = int(np.argmax(probs))
    why = explain_step(contributions, best)
    who = agent_name(steps[best])
    reason = f"step {best} ({who}): " + (why or "highest score")
    return Attribution(
        agent=who,
        step=best,
        reason=f"{reason} [{method}]",
        confidence=confidence_of(probs, best),
        step_scores=[float(p) for p in probs],
        method=method,
    )


def weights_vector(weights: dict[str, float], names: Sequence[str] = FEATURES) -> np.ndarray:
    return np.array([weights.get(n, 0.0) for n in names], dtype=np.float64)
