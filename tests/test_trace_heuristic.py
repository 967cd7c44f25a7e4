"""Heuristic tracer on small hand-made trajectories, and the mistake JSON of multi-agent logs."""

from __future__ import annotations

from typing import Any

import pytest

from kb.embeddings import HashEmbedder
from kb.importers import from_multiagent
from kb.models import ExperienceCreate, Outcome, Step
from kb.trace import (
    METHODS,
    attribute,
    choose_method,
    default_model,
    preference_pair,
    to_mistake_json,
)
from kb.trace.features import FEATURES, extract


def _exp(steps: list[dict[str, Any]], **extra: Any) -> ExperienceCreate:
    return ExperienceCreate(
        task=extra.pop("task", "Find the order of user alice_1 and cancel order #W100"),
        outcome=extra.pop("outcome", Outcome.failure),
        steps=[Step(index=i, **s) for i, s in enumerate(steps)],
        **extra,
    )


def call(tool: str, **args: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "agent": "assistant",
        "kind": "tool_call",
        "tool": tool,
        "args": args,
    }


def obs(text: str, error: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "tool", "agent": "tool", "kind": "observation", "result": text}
    if error:
        out.update(kind="error", error=text)
    return out


USER = {"role": "user", "agent": "user", "content": "Please cancel order #W100 for alice_1."}
SYSTEM = {"role": "system", "agent": "system", "content": "You are a helpful agent."}

SCENARIOS = {
    "error in tool result": (
        [
            SYSTEM,
            USER,
            call("get_order", order_id="#W100"),
            obs('{"status": "pending"}'),
            call("cancel_order", order_id="#W100", reason="oops"),
            obs("Error: reason must be 'no longer needed'", error=True),
            {"role": "assistant", "agent": "assistant", "content": "Done, it is cancelled."},
        ],
        4,
    ),
    "loop": (
        [
            SYSTEM,
            USER,
            call("search_orders", user="alice_1"),
            obs("[]"),
            call("search_orders", user="alice_1"),
            obs("[]"),
            call("search_orders", user="alice_1"),
            obs("[]"),
            {"role": "assistant", "agent": "assistant", "content": "I could not find it."},
        ],
        4,
    ),
    "hallucinated argument": (
        [
            SYSTEM,
            USER,
            call("get_user", user_id="alice_1"),
            obs('{"orders": ["#W100"]}'),
            call("cancel_order", order_id="#W999", reason="no longer needed"),
            obs('{"ok": true}'),
            {"role": "assistant", "agent": "assistant", "content": "Cancelled."},
        ],
        4,
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_heuristic_finds_the_planted_mistake(name: str) -> None:
    steps, expected = SCENARIOS[name]
    exp = _exp(steps)
    result = attribute(exp, method="heuristic")
    assert result.step == expected, result.reason
    assert result.agent == "assistant"
    assert result.method == "heuristic"
    assert len(result.step_scores) == len(steps)
    assert abs(sum(result.step_scores) - 1) < 1e-6
    assert 0 < result.confidence <= 1


def test_features_have_one_row_per_step_and_accept_an_embedder() -> None:
    exp = _exp(SCENARIOS["loop"][0])
    embedder = HashEmbedder(dim=32)
    matrix = extract(exp, embed=lambda texts: embedder.encode(texts))
    assert matrix.shape == (len(exp.steps), len(FEATURES))
    assert matrix[4, FEATURES.index("repeat_call")] == 1.0
    assert attribute(exp, method="heuristic", embed=lambda t: embedder.encode(t)).step == 4


def test_reference_success_marks_the_departing_call() -> None:
    steps = [
        SYSTEM,
        USER,
        call("get_order", order_id="#W100"),
        obs('{"status": "pending"}'),
        call("cancel_order", order_id="#W100", reason="ordered by mistake"),
        obs("{}"),
        {"role": "assistant", "agent": "assistant", "content": "Cancelled."},
    ]
    good = [
        *steps[:4],
        call("cancel_order", order_id="#W100", reason="no longer needed"),
        obs("{}"),
    ]
    failure = _exp(steps)
    success = _exp(good, outcome=Outcome.success)
    result = attribute(failure, method="heuristic", references=[success])
    assert result.step == 4
    assert "depart" in result.reason
    pair = preference_pair(failure, result, success)
    assert pair is not None
    assert "ordered by mistake" in pair["wrong_step"]
    assert "no longer needed" in pair["corrected_step"]


def test_wrong_answer_is_traced_to_where_it_first_appears() -> None:
    record = {
        "question": "What is the population of the town in the 2020 census?",
        "ground_truth": "4,211",
        "history": [
            {"role": "user", "content": "What is the population of the town in the 2020 census?"},
            {"role": "assistant", "name": "Planner", "content": "WebSurfer, search the census."},
            {"role": "assistant", "name": "WebSurfer", "content": "The census page lists 4,211."},
            {"role": "assistant", "name": "Analyst", "content": "I read it as 3,912 residents."},
            {"role": "assistant", "name": "Planner", "content": "FINAL ANSWER: 3,912"},
        ],
    }
    exp = from_multiagent(record, source="test")
    result = attribute(exp, method="heuristic")
    out = to_mistake_json(exp, result)
    assert out["mistake_step"] == 3
    assert out["mistake_agent"] == "Analyst"
    assert set(out) >= {"mistake_agent", "mistake_step", "reason", "confidence", "method"}


def test_auto_uses_a_learned_model_only_when_given_one() -> None:
    exp = _exp(SCENARIOS["loop"][0])
    assert choose_method(exp) == "heuristic"
    assert attribute(exp).method == "heuristic"
    model = default_model()
    assert model is not None  # the shipped model is there for method="learned"
    assert choose_method(exp, model=model) == "learned"
    assert attribute(exp, method="learned").method == "learned"
    assert "auto" in METHODS and "counterfactual" in METHODS


def test_unknown_method_is_refused() -> None:
    from kb.errors import Invalid

    with pytest.raises(Invalid, match="unknown tracing method"):
        attribute(_exp(SCENARIOS["loop"][0]), method="magic")
