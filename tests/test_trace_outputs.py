"""Honest outputs of every tracer: successful runs are not blamed, the system prompt never is,
confidence is not overstated, agent names are one per agent, blame shares add up."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kb.importers import from_multiagent
from kb.models import ExperienceCreate, Outcome, Step
from kb.trace import agent_shares, attribute, default_model, not_a_failure, to_mistake_json
from kb.trace.agents import addressee, agent_name, canonical
from kb.trace.blame import instructors, table
from kb.trace.learned import FORMAT_TEXT, LearnedModel

pytestmark = pytest.mark.timeout(120)

TEAM: dict[str, Any] = {
    "question": "What is 17 * 23?",
    "ground_truth": "391",
    "history": [
        {"role": "human", "content": "What is 17 * 23?"},
        {"role": "Orchestrator (thought)", "content": "Plan:\n1. Coder computes it.\n2. Answer."},
        {"role": "Orchestrator (-> Coder)", "content": "Please compute 17 * 23."},
        {"role": "Coder", "content": "```python\nprint(17 * 23)\n```"},
        {
            "role": "ComputerTerminal",
            "content": "exitcode: 0 (execution succeeded)\nCode output: 381",
        },
        {"role": "Orchestrator (thought)", "content": "FINAL ANSWER: 381"},
    ],
}


def team(**changes: Any) -> ExperienceCreate:
    return from_multiagent({**TEAM, **changes}, source="test")


@pytest.mark.parametrize("method", ["heuristic", "learned"])
def test_a_successful_run_is_not_blamed(method: str) -> None:
    exp = team(outcome="success")
    a = attribute(exp, method=method)
    assert a.step is None and a.agent is None and a.confidence == 0.0
    assert "succeeded" in a.reason and len(a.step_scores) == len(exp.steps)
    assert to_mistake_json(exp, a)["mistake_agent"] is None


@pytest.mark.parametrize(
    ("final", "truth", "blamed"),
    [
        ("FINAL ANSWER: 391", "391", False),
        ("The answer is 1,250.", "1250", False),
        ("Final answer: Paris", "paris", False),
        ("FINAL ANSWER: 381", "391", True),
        ("I think 391 is close", "391", True),  # a mention is not an answer
    ],
)
def test_a_matching_final_answer_is_a_success_when_the_outcome_is_unknown(
    final: str, truth: str, blamed: bool
) -> None:
    history = [*TEAM["history"][:-1], {"role": "Orchestrator (thought)", "content": final}]
    exp = team(history=history, ground_truth=truth)
    assert exp.outcome == Outcome.unknown
    assert (not_a_failure(exp) is None) == blamed
    assert (attribute(exp, method="heuristic").step is not None) == blamed


def test_an_explicit_failure_is_always_traced() -> None:
    history = [
        *TEAM["history"][:-1],
        {"role": "Orchestrator (thought)", "content": "FINAL ANSWER: 391"},
    ]
    exp = team(history=history, outcome="failure")
    assert not_a_failure(exp) is None
    assert attribute(exp, method="heuristic").step is not None


def test_the_system_prompt_is_never_blamed_and_confidence_is_modest() -> None:
    exp = ExperienceCreate(
        task="Say hello",
        outcome=Outcome.failure,
        steps=[
            Step(
                index=0, role="system", agent="system", content="You are a bot. Error codes: 500."
            ),
            Step(index=1, role="user", agent="user", content="hello"),
        ],
    )
    a = attribute(exp, method="heuristic")
    assert a.step == 1 and a.step_scores[0] == 0.0
    assert a.confidence == pytest.approx(0.5)  # the only candidate, but no evidence against it
    many = ExperienceCreate(
        task="Say hello",
        outcome=Outcome.failure,
        steps=[Step(index=i, role="assistant", agent="bot", content=f"hi {i}") for i in range(4)],
    )
    assert attribute(many, method="heuristic").confidence < 0.4  # no evidence, no certainty


def test_agent_names_drop_annotations() -> None:
    exp = team()
    assert canonical("Orchestrator (-> WebSurfer)") == "Orchestrator"
    assert canonical("Computer_terminal") == "Computer_terminal"
    assert [agent_name(s) for s in exp.steps][:3] == ["human", "Orchestrator", "Orchestrator"]
    assert addressee(exp.steps[2]) == "Coder"
    assert instructors(exp)[3] == "Orchestrator"  # the coder acts on the orchestrator's request


def test_blame_shares_cover_the_agents_and_sum_to_one() -> None:
    exp = team()
    probs = np.zeros(len(exp.steps))
    probs[3] = 0.7
    probs[2] = 0.3
    shares = agent_shares(exp, probs)
    assert set(shares) == {"human", "Orchestrator", "Coder", "ComputerTerminal"}
    assert abs(sum(shares.values()) - 1) < 1e-9
    assert shares["Coder"] > shares["Orchestrator"] > shares["ComputerTerminal"]
    tab = table(exp, probs)
    flow = tab.features[tab.agents.index("Orchestrator"), 3]  # flow_instruction
    assert flow == pytest.approx(0.7)  # the coder's responsibility flows back to who asked


def test_the_shipped_model_is_small_plain_json_and_traces_offline(embedder: Any) -> None:
    model = default_model()
    assert model is not None and model.is_text
    assert model.to_json()["format"] == FORMAT_TEXT
    from kb.trace.learned import DEFAULT_MODEL_PATH

    assert DEFAULT_MODEL_PATH.stat().st_size <= 5 * 2**20
    assert model.meta["script"] == "python -m kb.trace.train_default"
    assert model.temperature > 0 and model.agent is not None
    checks = model.meta["validation"]
    assert set(checks) == {"heldout_synthetic", "tau_retail_real"}
    wins = all(
        c["learned"]["step"] > c["heuristic"]["step"]
        and c["learned"]["agent"] >= c["heuristic"]["agent"]
        for c in checks.values()
    )
    assert model.meta["beats_heuristic"] == wins  # what `auto` relies on
    a = attribute(team(), method="learned", embed=embedder.encode)
    assert a.method == "learned" and (a.step is None or a.step > 0)
    assert a.step is None or a.agent == agent_name(team().steps[a.step])


def test_auto_uses_the_shipped_model_only_where_it_was_measured_to_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kb.trace as trace

    shipped = default_model()
    assert shipped is not None

    def with_verdict(verdict: bool) -> LearnedModel:
        data = shipped.to_json()
        return LearnedModel.from_json(
            {**data, "meta": {**data["meta"], "beats_heuristic": verdict}}
        )

    monkeypatch.setattr(trace, "default_model", lambda: with_verdict(False))
    assert trace.preferred_model() is None
    monkeypatch.setattr(trace, "default_model", lambda: with_verdict(True))
    assert trace.preferred_model() is not None
