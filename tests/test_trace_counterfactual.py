"""Counterfactual tracing with a toy replay: a run of skills over a small state."""

from __future__ import annotations

from typing import Any

import pytest

from kb.errors import Invalid
from kb.models import ExperienceCreate, Outcome, Step
from kb.trace import Replay, attribute, choose_method, preference_pair


def run_step(step: Step) -> Step:
    """Toy skills: ``add`` adds x to the running total; the result is the addend."""
    return step.model_copy(update={"result": str((step.args or {}).get("x", 0))})


def judge(steps: list[Step]) -> bool:
    return sum(int(s.result or 0) for s in steps if s.kind == "skill_run") == 10


def _run(xs: list[int], outcome: Outcome, tools: list[str] | None = None) -> ExperienceCreate:
    steps = [Step(index=0, role="user", agent="user", content="make 10")]
    for i, x in enumerate(xs, start=1):
        tool = tools[i - 1] if tools else "add"
        steps.append(
            Step(
                index=i,
                role="assistant",
                agent="runner",
                kind="skill_run",
                tool=tool,
                args={"x": x},
                result=str(x),
            )
        )
    return ExperienceCreate(task="make 10 with three additions", outcome=outcome, steps=steps)


def test_the_step_whose_swap_flips_the_outcome_is_blamed() -> None:
    failure = _run([3, 3, 3], Outcome.failure)
    success = _run([3, 4, 3], Outcome.success)
    replay = Replay(run_step=run_step, judge=judge)
    assert choose_method(failure, replay=replay) == "counterfactual"
    result = attribute(failure, references=[success], replay=replay)
    assert result.method == "counterfactual"
    assert result.step == 2 and result.agent == "runner"
    assert result.corrected == 'add({"x": 4})'
    assert result.confidence > 0.9 and result.step_scores[2] == 1.0
    pair = preference_pair(failure, result)
    assert pair is not None and pair["corrected_step"] == 'add({"x": 4})'


def test_corrected_args_from_the_caller_and_confidence_from_many_flips() -> None:
    failure = _run([3, 3, 3], Outcome.failure)
    replay = Replay(run_step=run_step, judge=judge, corrected_args={1: {"x": 4}, 3: {"x": 4}})
    result = attribute(failure, method="counterfactual", replay=replay)
    assert result.step == 1  # the first flipping step
    assert result.confidence == pytest.approx(0.5)  # two steps flip the outcome


def test_no_flip_falls_back_with_low_confidence() -> None:
    failure = _run([3, 3, 3], Outcome.failure)
    replay = Replay(run_step=run_step, judge=judge, corrected_args={1: {"x": 3}})
    result = attribute(failure, method="counterfactual", replay=replay)
    assert result.method == "counterfactual+heuristic"
    assert result.confidence <= 0.3 and "no single replacement" in result.reason


def test_needs_skill_runs_and_hooks() -> None:
    plain = ExperienceCreate(task="t", steps=[Step(index=0, role="user", content="hi")])
    with pytest.raises(Invalid):
        attribute(plain, method="counterfactual", replay=Replay(run_step=run_step, judge=judge))
    with pytest.raises(Invalid, match="replay hooks"):
        attribute(_run([1], Outcome.failure), method="counterfactual")
    kwargs: dict[str, Any] = {}
    assert choose_method(_run([1], Outcome.failure), **kwargs) != "counterfactual"
