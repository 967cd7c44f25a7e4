"""Offline distillation: strategy, plan and lessons from a trajectory, stored with provenance
``distilled``, recomputed when a trace or a repair link arrives, never over human-written text;
and pitfalls that say what went wrong before any tracing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kb.config import Settings
from kb.distill import (
    calls_of,
    decision_tools,
    distill,
    failing_tool,
    failure_facts,
    is_state_changing,
)
from kb.embeddings import HashEmbedder
from kb.models import ExperienceCreate
from kb.service import KnowledgeBase

pytestmark = pytest.mark.timeout(120)


def call(tool: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "kind": "tool_call", "tool": tool, "args": args}


def reply(tool: str, result: str | None = None, error: str | None = None) -> dict[str, Any]:
    if error is not None:
        return {"role": "tool", "kind": "error", "tool": tool, "error": error}
    return {"role": "tool", "kind": "observation", "tool": tool, "result": result}


def refund_run(amount: float, *, outcome: str, confirm: bool = True) -> ExperienceCreate:
    """A shop run: find the customer, read the order, (confirm), refund ``amount``."""
    steps = [
        {"role": "user", "content": "My blender arrived broken, order #A100. Email ana@x.org."},
        call("find_customer", {"email": "ana@x.org"}),
        reply("find_customer", '{"customer_id": "c_ana"}'),
        call("get_order", {"order_id": "#A100", "customer_id": "c_ana"}),
        reply("get_order", '{"status": "delivered", "paid": 25.0, "payment": "card_7"}'),
    ]
    if confirm:
        steps += [
            {"role": "assistant", "content": "Shall I refund 25.0 to card_7? Please confirm."},
            {"role": "user", "content": "Yes, go ahead."},
        ]
    steps.append(call("refund_payment", {"order_id": "#A100", "amount": amount, "to": "card_7"}))
    if amount > 25.0:
        steps.append(
            reply(
                "refund_payment",
                error=f"Error: refund amount {amount} exceeds the amount paid (25.0)",
            )
        )
    else:
        steps.append(reply("refund_payment", '{"refund_id": "r_1", "status": "ok"}'))
    return ExperienceCreate.model_validate(
        {"task": "Refund the broken blender of order #A100", "outcome": outcome, "steps": steps}
    )


def test_a_success_becomes_decision_points_with_bindings_checks_and_a_plan() -> None:
    result = distill(refund_run(25.0, outcome="success"))
    assert [p.tool for p in result.points] == ["find_customer", "get_order", "refund_payment"]
    assert result.points[0].bindings == {"email": "user"}
    assert result.points[1].bindings == {"order_id": "user", "customer_id": "find_customer"}
    assert result.points[2].bindings["to"] == "get_order"
    assert result.points[2].bindings["amount"] == "get_order"
    text = result.strategy_text()
    assert text.startswith("Goal: Refund the broken blender")
    assert decision_tools(text) == ["find_customer", "get_order", "refund_payment"]
    assert result.checks == ["refund_payment after get_order (user confirmed)"]
    assert result.plan == [
        "find_customer(email)",
        "get_order(order_id, customer_id)",
        "confirm with the user",
        "refund_payment(order_id, amount, to)",
    ]
    assert result.lessons == []


def test_a_failure_names_its_failing_step_error_and_traced_cause() -> None:
    run = refund_run(40.0, outcome="failure", confirm=False)
    lessons = distill(run).lessons
    assert lessons[0].startswith("Failing step 5: refund_payment(order_id=#A100, amount=40.0")
    assert "exceeds the amount paid (25.0)" in lessons[0]
    assert failing_tool(lessons) == "refund_payment"
    assert distill(run).checks == ["refund_payment after get_order"]  # nobody confirmed
    traced = ExperienceCreate.model_validate(
        {
            **run.model_dump(),
            "attribution": {
                "step": 3,
                "reason": "read the order but ignored what was paid",
                "confidence": 0.7,
                "method": "heuristic",
            },
        }
    )
    lessons = distill(traced).lessons
    assert lessons[0].startswith("Failing step 3: get_order(")
    assert lessons[1] == (
        "Cause (heuristic, confidence 0.70): read the order but ignored what was paid"
    )


def test_a_repaired_failure_says_instead_of_x_do_y() -> None:
    failure = refund_run(40.0, outcome="failure")
    fixed = refund_run(25.0, outcome="success")
    lessons = distill(failure, repairs=[fixed]).lessons
    assert lessons[-1] == (
        "Instead of refund_payment(amount=40.0 [chosen]), do refund_payment(amount=25.0 "
        "[get_order])"
    )


def test_a_recovered_error_is_a_lesson_not_the_failing_step() -> None:
    steps = [
        {"role": "user", "content": "Book me on the 9am flight"},
        call("book", {"flight": "F1", "pay": 10}),
        reply("book", error="Error: payment does not add up, total 12"),
        call("book", {"flight": "F1", "pay": 12}),
        reply("book", '{"ok": true}'),
        call("send_email", {"to": "me"}),
        reply("send_email", '{"sent": true}'),
    ]
    run = ExperienceCreate(task="Book the 9am flight", outcome="failure", steps=steps)  # type: ignore[arg-type]
    lessons = distill(run).lessons
    assert lessons[0].startswith("Failing step 5: send_email(")  # the last write, not the retry
    assert (
        "When book fails (Error: payment does not add up, total 12), retry with pay=12"
        in (lessons[1])
    )


def test_calls_pair_replies_and_state_changing_names() -> None:
    run = refund_run(40.0, outcome="failure")
    calls = calls_of(run.steps)
    assert [(c.tool, c.failed) for c in calls] == [
        ("find_customer", False),
        ("get_order", False),
        ("refund_payment", True),
    ]
    assert [is_state_changing(t) for t in ("get_order", "listItems", "refund_payment")] == [
        False,
        False,
        True,
    ]


def test_failure_facts_are_the_error_and_the_last_call() -> None:
    facts = failure_facts(refund_run(40.0, outcome="failure").steps)
    assert facts == [
        "Error at step 8 (refund_payment): Error: refund amount 40.0 exceeds the amount paid "
        "(25.0)",
        "Last tool call (step 7): refund_payment(order_id=#A100, amount=40.0, to=card_7) -> "
        "Error: refund amount 40.0 exceeds the amount paid (25.0)",
    ]
    assert failure_facts([]) == []


# -- in the store --------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> KnowledgeBase:
    return KnowledgeBase.open(tmp_path / "s", embedder=HashEmbedder())


def test_stored_runs_are_distilled_with_provenance(store: KnowledgeBase) -> None:
    with store as kb:
        ids = [r.id for r in kb.add_experiences([refund_run(25.0, outcome="success")])]
        exp = kb.get_experience(ids[0])
        assert exp.distilled is not None and exp.distilled.source == "distilled"
        assert exp.distilled.method == "offline"
        assert exp.distilled.fields == ["strategy", "plan"]  # a success without lessons
        assert decision_tools(exp.strategy) == ["find_customer", "get_order", "refund_payment"]
        assert kb.distill([ids[0]]).unchanged == [ids[0]]  # nothing it reads changed


def test_a_run_without_tool_calls_gets_lessons_but_no_strategy(store: KnowledgeBase) -> None:
    steps = [
        {"role": "user", "agent": "user", "content": "What is 6 x 7?"},
        {"role": "assistant", "agent": "solver", "content": "It is 48."},
    ]
    with store as kb:
        exp_id = kb.add_experience(
            {"task": "What is 6 x 7?", "outcome": "failure", "steps": steps}
        ).id
        exp = kb.get_experience(exp_id)
        assert exp.strategy is None
        assert exp.lessons == ["Failing step 1 (solver message): It is 48."]
        assert exp.distilled is not None and exp.distilled.fields == ["lessons"]


def test_human_text_is_never_overwritten(store: KnowledgeBase) -> None:
    run = refund_run(40.0, outcome="failure").model_copy(
        update={"strategy": "Always read what was paid before refunding."}
    )
    with store as kb:
        exp_id = kb.add_experience(run).id
        exp = kb.get_experience(exp_id)
        assert exp.strategy == "Always read what was paid before refunding."
        assert exp.distilled is not None and "strategy" not in exp.distilled.fields
        assert "lessons" in exp.distilled.fields
        # a person writes the lessons: they are theirs from then on
        kb.update_experience(exp_id, {"lessons": ["Refund at most the amount paid."]})
        kb.label(exp_id, step=7, reason="refunded more than was paid")
        exp = kb.get_experience(exp_id)
        assert exp.lessons == ["Refund at most the amount paid."]
        assert exp.strategy == "Always read what was paid before refunding."
        assert exp.distilled is not None and exp.distilled.fields == ["plan"]
        report = kb.distill([exp_id], force=True)
        exp = kb.get_experience(exp_id)
        assert exp.lessons == ["Refund at most the amount paid."]
        assert report.distilled == [exp_id]  # the plan was refreshed, nothing else


def test_a_trace_and_a_repair_link_redistill_the_lessons(store: KnowledgeBase) -> None:
    with store as kb:
        failure, fixed = (
            r.id
            for r in kb.add_experiences(
                [refund_run(40.0, outcome="failure"), refund_run(25.0, outcome="success")]
            )
        )
        before = kb.get_experience(failure)
        assert before.lessons[0].startswith("Failing step 7: refund_payment(")
        kb.label(failure, step=4, reason="misread the amount paid")
        traced = kb.get_experience(failure)
        assert traced.lessons[0].startswith("Failing step 4: get_order(")
        assert traced.lessons[1] == "Cause (label, confidence 1.00): misread the amount paid"
        assert traced.version == before.version + 1  # recomputed within the label's update
        kb.add_edge(failure, fixed, "repaired_by")
        repaired = kb.get_experience(failure)
        assert repaired.distilled is not None and repaired.distilled.repairs == [fixed]
        assert any(x.startswith("Instead of ") for x in repaired.lessons)


def test_distillation_can_be_turned_off(tmp_path: Path) -> None:
    settings = Settings(distill="off")
    with KnowledgeBase.open(tmp_path / "off", settings=settings, embedder=HashEmbedder()) as kb:
        exp = kb.get_experience(kb.add_experience(refund_run(25.0, outcome="success")).id)
        assert exp.strategy is None and exp.distilled is None
        report = kb.distill()  # explicitly asked for, it still runs
        assert report.distilled == [exp.id]
        assert kb.get_experience(exp.id).distilled is not None


def test_reimport_of_the_same_run_is_unchanged(store: KnowledgeBase, tmp_path: Path) -> None:
    import json

    run = refund_run(40.0, outcome="failure").model_dump(mode="json")
    path = tmp_path / "runs.json"
    path.write_text(json.dumps([run]))
    with store as kb:
        first = kb.import_file(path)
        kb.add_edge(
            first.added[0], kb.add_experience(refund_run(25.0, outcome="success")).id, "repaired_by"
        )
        again = kb.import_file(path)
        assert again.unchanged == first.added


def test_pitfalls_say_what_went_wrong_before_any_tracing(kb: KnowledgeBase, tmp_path: Path) -> None:
    off = KnowledgeBase.open(
        tmp_path / "off", settings=Settings(distill="off"), embedder=kb.embedder
    )
    with off:
        off.add_experience(refund_run(40.0, outcome="failure"))
        bundle = off.retrieve("Refund a broken blender", k=3)
        text = bundle.pitfalls[0].text
        assert "cause not attributed" not in text
        assert (
            "Error at step 8 (refund_payment): Error: refund amount 40.0 exceeds the amount paid "
            "(25.0)" in text
        )
        assert "Last tool call (step 7): refund_payment(order_id=#A100, amount=40.0" in text
        assert "Error at step 8 (refund_payment)" in bundle.context
    kb.add_experience(refund_run(40.0, outcome="failure"))
    kb.add_experience(refund_run(25.0, outcome="success"))
    bundle = kb.retrieve("Refund a broken blender", k=3)
    assert "Lessons (distilled): Failing step 7: refund_payment(" in bundle.pitfalls[0].text
    strategy = bundle.strategies[0].text
    assert "Strategy (distilled): Decision points: (1) find_customer(email<-user)" in strategy
    assert "Goal:" not in strategy  # the task is shown once


def test_cli_distill(tmp_path: Path, kb: KnowledgeBase) -> None:
    import json

    from typer.testing import CliRunner

    from kb.cli import app

    store = tmp_path / "cli"
    off = Settings(distill="off")
    with KnowledgeBase.open(store, settings=off, embedder=kb.embedder) as plain:
        exp_id = plain.add_experience(refund_run(40.0, outcome="failure")).id
    runner = CliRunner()
    done = runner.invoke(app, ["--store", str(store), "distill", "--json"])
    assert done.exit_code == 0, done.stdout
    assert json.loads(done.stdout)["distilled"] == [exp_id]
    again = runner.invoke(app, ["--store", str(store), "distill", exp_id, "--json"])
    assert json.loads(again.stdout)["unchanged"] == [exp_id]
    missing = runner.invoke(app, ["--store", str(store), "distill", "exp_nope"])
    assert missing.exit_code == 1 and "no experience 'exp_nope'" in missing.stdout + missing.stderr
    no_llm = runner.invoke(app, ["--store", str(store), "distill", "--llm"])
    assert no_llm.exit_code == 1 and "KB_LLM_BASE_URL" in no_llm.stdout + no_llm.stderr
