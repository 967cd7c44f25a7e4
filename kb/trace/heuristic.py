"""The heuristic back end: hand-weighted signals read from the log, no model calls."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kb.models import Attribution, ExperienceCreate
from kb.trace.features import FEATURES, Embed, extract, role_of
from kb.trace.scoring import attribution_from_scores, weights_vector

WEIGHTS: dict[str, float] = {
    "first_bad_call": 3.0,
    "claim_mismatch": 2.0,
    "answer_origin": 2.5,
    "error_next": 2.0,
    "novel_args": 1.5,
    "error_here": 1.0,
    "repeat_call": 1.0,
    "repeat_text": 0.8,
    "ref_args_mismatch": 1.0,
    "ref_extra": 0.8,
    "ref_first_divergence": 0.5,
    "before_bad_call": 1.0,
    "correction_next": 0.6,
    "refusal": 1.0,
    "novel_values": 0.5,
    "is_write_call": 0.5,
    "drift": 0.3,
    "is_actor": 0.5,
    "is_user": 0.2,
    "is_tool": -2.0,
    "early": 0.05,
}
"""Weight of each signal. Chosen by hand from what each signal means, not fitted to a data set."""

SYSTEM_PENALTY = -5.0
TEMPERATURE = 2.3
"""Softmax temperature of the scores, so that the confidence is a probability rather than the
near-certainty a temperature of 1 gave (``benchmarks/bench_tracer.py`` reports the reliability
table of the resulting confidence on held-out faults)."""


def score(features: np.ndarray, roles: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(scores per step, contributions per step and feature)``."""
    contributions = features * weights_vector(WEIGHTS)[None, :]
    scores = contributions.sum(axis=1)
    for i, role in enumerate(roles):
        if role == "system":
            scores[i] += SYSTEM_PENALTY
    return scores, contributions


def attribute(
    experience: ExperienceCreate,
    *,
    references: Sequence[ExperienceCreate] = (),
    embed: Embed | None = None,
) -> Attribution:
    """Blame the step with the strongest weighted evidence of having gone wrong."""
    features = extract(experience, references=references, embed=embed)
    roles = [role_of(s) for s in experience.steps]
    scores, contributions = score(features, roles)
    return attribution_from_scores(
        experience,
        scores,
        method="heuristic",
        contributions=contributions,
        temperature=TEMPERATURE,
    )


__all__ = ["FEATURES", "TEMPERATURE", "WEIGHTS", "attribute", "score"]
