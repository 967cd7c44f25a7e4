"""Fault injection: templated team runs, faults replayed on the simulated world, chat faults
confirmed by the gold actions, labels in the native format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kb.importers import iter_experiences
from kb.models import ExperienceCreate, Outcome, Step
from kb.trace import FAULTS, SynthReport, generate_team_logs, read_jsonl, synthesize, write_jsonl
from kb.trace.agents import agent_name, canonical
from kb.trace.teams import Fault, replay
from kb.trace.teamworld import task_from_json

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def team_logs() -> list[ExperienceCreate]:
    return generate_team_logs(36, seed=5)


@pytest.fixture(scope="module")
def team_failures(team_logs: list[ExperienceCreate]) -> list[ExperienceCreate]:
    return synthesize(team_logs, seed=1, per_success=3)


def test_team_runs_are_successes_with_a_replayable_program(
    team_logs: list[ExperienceCreate],
) -> None:
    again = generate_team_logs(36, seed=5)
    assert [e.model_dump(exclude={"provenance"}) for e in again] == [
        e.model_dump(exclude={"provenance"}) for e in team_logs
    ]  # deterministic
    styles = {t for e in team_logs for t in e.tags if t.startswith("style:")}
    assert styles == {"style:orchestrated", "style:groupchat", "style:plain"}
    for exp in team_logs:
        assert exp.outcome == Outcome.success and exp.ground_truth
        program = exp.artifacts["program"]
        assert replay(program, None).answer == exp.ground_truth  # the replay reproduces the run
        assert len({agent_name(s) for s in exp.steps}) >= 3  # several named agents
        assert exp.steps[-1].index == len(exp.steps) - 1


def test_splits_differ_in_domains_agent_names_and_wording() -> None:
    train = generate_team_logs(24, seed=2, split="train")
    held = generate_team_logs(24, seed=2, split="heldout")
    domains = {e.domain for e in train}, {e.domain for e in held}
    assert domains[0] and domains[1] and not domains[0] & domains[1]
    names = [{agent_name(s) for e in logs for s in e.steps} for logs in (train, held)]
    assert not (names[0] & names[1]) - {"user", "human"}
    texts = [{s.content for e in logs for s in e.steps} for logs in (train, held)]
    assert not texts[0] & texts[1]


def test_team_faults_are_labelled_and_confirmed_by_replay(
    team_failures: list[ExperienceCreate],
) -> None:
    kinds = {e.artifacts["fault"]["type"] for e in team_failures}
    assert kinds == set(FAULTS) - {"user_misstatement"}  # every multi-agent fault type
    for exp in team_failures:
        label = exp.attribution
        fault = exp.artifacts["fault"]
        assert label is not None and label.method == "label" and label.step is not None
        assert exp.outcome == Outcome.failure
        assert label.agent == agent_name(exp.steps[label.step]) == fault["agent"]
        assert fault["confirmed_by"] == "replay" and exp.final_answer != exp.ground_truth
        # replaying the recorded fault gives the same log: the flip is reproducible
        program = fault["program"]
        again = replay(program, Fault(**program["fault"]))
        assert again.fault_step == label.step
        assert [h["content"] for h in again.history] == [s.content for s in exp.steps]


@pytest.mark.parametrize("kind", ["mis_delegation", "wrong_plan"])
def test_lead_faults_blame_the_lead(kind: str, team_failures: list[ExperienceCreate]) -> None:
    found = [e for e in team_failures if e.artifacts["fault"]["type"] == kind]
    assert found
    for exp in found:
        program = exp.artifacts["fault"]["program"]
        task = task_from_json(program["task"])
        assert task.subs  # the program is stored with the label
        step = exp.steps[exp.attribution.step]  # type: ignore[union-attr]
        first = next(s for s in exp.steps if s.role not in {"user", "human"})
        assert agent_name(step) == agent_name(first)  # the lead (planner / orchestrator)
        if kind == "wrong_plan":
            assert exp.attribution.step == first.index  # type: ignore[union-attr]


def test_synthesis_is_deterministic_and_counts_confirmations(
    team_logs: list[ExperienceCreate],
) -> None:
    report = SynthReport()
    a = synthesize(team_logs[:10], seed=3, n=12, report=report)
    b = synthesize(team_logs[:10], seed=3, n=12)
    assert [e.model_dump(exclude={"provenance"}) for e in a] == [
        e.model_dump(exclude={"provenance"}) for e in b
    ]
    assert len(a) == 12 == report.made == sum(report.by_fault.values())
    assert report.confirmed == {"replay": 12}
    with pytest.raises(ValueError, match="unknown fault types"):
        synthesize(team_logs, faults=["typo"])


def test_native_jsonl_round_trip(tmp_path: Path, team_failures: list[ExperienceCreate]) -> None:
    path = write_jsonl(team_failures[:5], tmp_path / "faults.jsonl")
    assert read_jsonl(path) == team_failures[:5]
    imported = [e for _, e in iter_experiences(path)]
    assert all(isinstance(e, ExperienceCreate) for e in imported)
    assert [e.attribution for e in imported] == [e.attribution for e in team_failures[:5]]  # type: ignore[union-attr]


# -- chat logs (tau-bench style) ---------------------------------------------------------------
def _call(tool: str, **args: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "agent": "assistant",
        "kind": "tool_call",
        "tool": tool,
        "args": args,
    }


def _obs(tool: str, text: str) -> dict[str, Any]:
    return {"role": "tool", "agent": "tool", "kind": "observation", "tool": tool, "result": text}


def _say(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "agent": role, "content": text}


CHAT = [
    _say("system", "You are a retail agent. Confirm before changing an order."),
    _say("user", "Hi, I want to cancel my order #W1234567, my email is ann@example.com."),
    _call("find_user_id_by_email", email="ann@example.com"),
    _obs("find_user_id_by_email", "ann_lee_1234"),
    _call("get_order_details", order_id="#W1234567"),
    _obs("get_order_details", '{"order_id": "#W1234567", "status": "pending", "total": 154.20}'),
    _say(
        "assistant", "Order #W1234567 is pending, total $154.20. Do you confirm the cancellation?"
    ),
    _say("user", "Yes, please go ahead."),
    _call("cancel_pending_order", order_id="#W1234567", reason="no longer needed"),
    _obs("cancel_pending_order", '{"order_id": "#W1234567", "status": "cancelled"}'),
    _say("assistant", "Your order #W1234567 is cancelled; $154.20 will be refunded."),
    _say("user", "Thanks! ###STOP###"),
]
GOLD = [
    {"name": "find_user_id_by_email", "kwargs": {"email": "ann@example.com"}},
    {"name": "get_order_details", "kwargs": {"order_id": "#W1234567"}},
    {
        "name": "cancel_pending_order",
        "kwargs": {"order_id": "#W1234567", "reason": "no longer needed"},
    },
]


def _chat_success(i: int) -> ExperienceCreate:
    return ExperienceCreate(
        task=f"You are Ann ({i}); cancel order #W1234567 because you no longer need it.",
        domain="retail-test",
        outcome=Outcome.success,
        steps=[Step(index=k, **s) for k, s in enumerate(CHAT)],
        gold_actions=GOLD,
        final_answer=CHAT[-2]["content"],
    )


@pytest.mark.parametrize(
    ("kind", "role", "confirmed"),
    [
        ("wrong_argument", "assistant", None),
        ("premature_final_answer", "assistant", "gold_actions"),
        ("ignored_tool_error", "assistant", "gold_actions"),
        ("skipped_verification", "assistant", None),
        ("mis_delegation", "assistant", "gold_actions"),
        ("hallucinated_value", "assistant", None),
        ("user_misstatement", "user", None),
    ],
)
def test_chat_faults(kind: str, role: str, confirmed: str | None) -> None:
    made = synthesize([_chat_success(i) for i in range(6)], seed=0, per_success=1, faults=[kind])
    assert made, kind
    for exp in made:
        label = exp.attribution
        assert label is not None and label.step is not None
        step = exp.steps[label.step]
        assert step.role == role and label.agent == canonical(step.agent or "")
        fault = exp.artifacts["fault"]
        assert fault["type"] == kind and exp.outcome == Outcome.failure
        if confirmed is not None:
            assert fault["confirmed_by"] == confirmed
        assert [s.index for s in exp.steps] == list(range(len(exp.steps)))
    if kind == "skipped_verification":
        assert all(len(e.steps) == len(CHAT) - 2 for e in made)  # confirmation exchange removed
        assert all(e.steps[e.attribution.step].tool == "cancel_pending_order" for e in made)  # type: ignore[union-attr]
    if kind == "wrong_argument":
        changed = [e for e in made if e.artifacts["fault"]["confirmed_by"] == "gold_actions"]
        assert changed
        for exp in changed:  # the wrong value reached the state-changing call
            (cancel,) = [s for s in exp.steps if s.tool == "cancel_pending_order" and s.args]
            assert cancel.args != GOLD[2]["kwargs"]


def test_jsonl_is_plain_json_per_line(tmp_path: Path) -> None:
    made = synthesize([_chat_success(0)], seed=0, per_success=2)
    path = write_jsonl(made, tmp_path / "x.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == len(made) and all(json.loads(line)["attribution"] for line in lines)
