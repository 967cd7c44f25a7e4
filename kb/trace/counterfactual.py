"""The counterfactual back end: replay a run of skills with one step replaced.

Protocol: the steps to intervene on have ``kind == "skill_run"``, ``tool`` = the skill's name,
``args`` = its parameters and ``result`` = what it returned. The caller supplies a :class:`Replay`:
``run_step(step) -> Step`` runs one skill step (returning it with a fresh ``result``/``error``)
and ``judge(steps) -> bool`` says whether a whole run succeeded. Candidates to put in place of a
step come from the aligned step of each reference success (a different skill, or the same skill
with other arguments) and from ``corrected_args`` given by the caller. Every later skill step is
run again, since it may depend on what the replaced step produced. The first step whose
replacement flips the failure to a success carries the responsibility.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kb.errors import Invalid
from kb.models import Attribution, ExperienceCreate, Step

SKILL_RUN = "skill_run"


@dataclass
class Replay:
    """Hooks to re-run skill steps and judge a run."""

    run_step: Callable[[Step], Step]
    judge: Callable[[list[Step]], bool]
    corrected_args: Mapping[int, dict[str, Any]] = field(default_factory=dict)
    max_trials: int = 50


def is_replayable(experience: ExperienceCreate) -> bool:
    """Whether the experience has skill-run steps to intervene on."""
    return any(s.kind == SKILL_RUN and s.tool for s in experience.steps)


def _describe(step: Step) -> str:
    return f"{step.tool}({json.dumps(step.args or {}, sort_keys=True, default=str)})"


def candidates(
    experience: ExperienceCreate,
    references: Sequence[ExperienceCreate] = (),
    corrected_args: Mapping[int, dict[str, Any]] | None = None,
) -> dict[int, list[Step]]:
    """Replacement steps for each skill step, from caller corrections then aligned references."""
    ours = [s for s in experience.steps if s.kind == SKILL_RUN]
    out: dict[int, list[Step]] = {}
    for index, args in (corrected_args or {}).items():
        original = experience.steps[index]
        out.setdefault(index, []).append(original.model_copy(update={"args": dict(args)}))
    for ref in references:
        theirs = [s for s in ref.steps if s.kind == SKILL_RUN]
        matcher = difflib.SequenceMatcher(
            a=[s.tool for s in ours], b=[s.tool for s in theirs], autojunk=False
        )
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "insert":
                continue
            for k in range(i2 - i1):
                if j1 + k >= j2:
                    break
                mine, other = ours[i1 + k], theirs[j1 + k]
                if mine.tool == other.tool and (mine.args or {}) == (other.args or {}):
                    continue
                swap = mine.model_copy(update={"tool": other.tool, "args": dict(other.args or {})})
                bucket = out.setdefault(mine.index, [])
                if all(_describe(b) != _describe(swap) for b in bucket):
                    bucket.append(swap)
    return out


def attribute(
    experience: ExperienceCreate,
    replay: Replay,
    *,
    references: Sequence[ExperienceCreate] = (),
) -> Attribution:
    """Blame the first skill step whose replacement flips the outcome to success."""
    if not is_replayable(experience):
        raise Invalid("counterfactual tracing needs steps with kind 'skill_run'")
    options = candidates(experience, references, replay.corrected_args)
    n = len(experience.steps)
    scores = [0.0] * n
    flips: list[tuple[int, Step]] = []
    trials = 0
    for index in sorted(options):
        for swap in options[index]:
            if trials >= replay.max_trials:
                break
            trials += 1
            if replay.judge(_rerun(experience.steps, index, swap, replay)):
                scores[index] = 1.0
                flips.append((index, swap))
                break
    if not flips:
        return Attribution(
            step=None,
            reason=f"no single replacement flipped the outcome ({trials} tried)",
            confidence=0.0,
            step_scores=scores,
            method="counterfactual",
            corrected=None,
        )
    index, swap = flips[0]
    step = experience.steps[index]
    total = sum(scores)
    return Attribution(
        agent=step.agent or step.role,
        step=index,
        reason=(
            f"replacing {_describe(step)} with {_describe(swap)} turns the failure into a success"
            + (f" ({len(flips)} steps flip the outcome)" if len(flips) > 1 else "")
        ),
        confidence=round(min(0.95, 1.0 / len(flips)), 4),
        step_scores=[s / total for s in scores],
        method="counterfactual",
        corrected=_describe(swap),
    )


def _rerun(steps: Sequence[Step], index: int, swap: Step, replay: Replay) -> list[Step]:
    out = list(steps[:index])
    out.append(replay.run_step(swap))
    for later in steps[index + 1 :]:
        out.append(replay.run_step(later) if later.kind == SKILL_RUN else later)
    return out
