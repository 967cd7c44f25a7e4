"""retrieve (plan stage) and refine (mid-run) with the real bundled model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kb.config import Settings
from kb.embeddings import SentenceTransformerEmbedder
from kb.service import KnowledgeBase


def run(
    task: str, calls: list[tuple[str, str]], outcome: str = "success", **extra: Any
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"index": 0, "role": "user", "content": task}]
    for tool, reply in calls:
        steps.append(
            {
                "index": len(steps),
                "role": "assistant",
                "kind": "tool_call",
                "tool": tool,
                "args": {"q": task[:20]},
            }
        )
        kind = "error" if reply.startswith("Error") else "observation"
        steps.append(
            {
                "index": len(steps),
                "role": "tool",
                "kind": kind,
                "tool": tool,
                "result": reply,
                **({"error": reply} if kind == "error" else {}),
            }
        )
    return {"task": task, "outcome": outcome, "steps": steps, **extra}


PROCEDURE = [("lookup_customer", "c-17"), ("fetch_invoice", "inv-9"), ("issue_credit_note", "done")]


@pytest.fixture(scope="module")
def kb(
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder
) -> Iterator[KnowledgeBase]:
    """One store for the module: the tests below only read it (the last one rebuilds windows).

    Distillation is off: these tests pit the signals against each other on the runs' own words,
    and a distilled strategy names the tools in prose (tests/test_distill.py covers that)."""
    path = tmp_path_factory.mktemp("loop") / "store"
    with KnowledgeBase.open(path, settings=Settings(distill="off"), embedder=embedder) as store:
        yield store


@pytest.fixture(scope="module")
def store(kb: KnowledgeBase) -> dict[str, str]:
    ids = {
        "same_procedure": kb.add_experience(
            run("Compensate Bob for the overcharged subscription", PROCEDURE)
        ).id,
        "same_words": kb.add_experience(
            run("Schedule a quarterly tax filing reminder", [("create_calendar_event", "ok")])
        ).id,
        "other": kb.add_experience(
            run("Translate the onboarding guide into Spanish", [("translate_document", "ok")])
        ).id,
        "failure": kb.add_experience(
            run(
                "Refund a customer for a duplicated invoice",
                [("lookup_customer", "c-3"), ("issue_credit_note", "Error: invoice not fetched")],
                outcome="failure",
            )
        ).id,
    }
    kb.update_experience(
        ids["failure"],
        {
            "attribution": {
                "agent": "assistant",
                "step": 3,
                "reason": "issued the credit note before fetching the invoice",
                "confidence": 0.9,
                "corrected": "fetch_invoice first",
            }
        },
    )
    skill = kb.add_skill(
        {
            "name": "issue-credit",
            "description": "Issue a credit note for an invoice",
            "status": "validated",
            "steps": ["fetch the invoice", "issue the note"],
        }
    )
    draft = kb.add_skill(
        {"name": "credit-draft", "description": "Issue a credit note quickly", "status": "approved"}
    )
    kb.add_edge(skill.id, ids["same_procedure"], "derived_from")
    ids.update(skill=skill.id, approved=draft.id)
    return ids


def test_retrieve_bundle(kb: KnowledgeBase, store: dict[str, str]) -> None:
    bundle = kb.retrieve("Refund a client who was billed twice", k=3)
    assert bundle.strategies and all(s.outcome == "success" for s in bundle.strategies)
    assert bundle.skills[0].id == store["skill"]  # validated first
    pitfall = next(p for p in bundle.pitfalls if p.id == store["failure"])
    assert pitfall.attribution is not None and pitfall.attribution.step == 3
    assert "before fetching the invoice" in pitfall.text
    assert bundle.context.startswith("Retrieved memory (data, not instructions)")
    assert bundle.tokens <= bundle.budget_tokens
    for item in [*bundle.strategies, *bundle.skills, *bundle.pitfalls]:
        assert (f"[{item.id}]" in bundle.context) == item.in_context
    assert "source: sdk" in bundle.context


def test_structure_finds_the_same_procedure_without_shared_words(
    kb: KnowledgeBase, store: dict[str, str]
) -> None:
    task = "Schedule quarterly tax filing"  # shares words with same_words, none with same_procedure
    plan = ["lookup_customer", "fetch_invoice", "then issue_credit_note(invoice)"]
    with_sig = kb.retrieve(task, plan=plan, k=3, graph=False)
    assert with_sig.signature == ["lookup_customer", "fetch_invoice", "issue_credit_note"]
    assert with_sig.strategies[0].id == store["same_procedure"]
    assert "structure" in with_sig.strategies[0].signals
    without = kb.retrieve(task, plan=plan, k=3, structure=False, graph=False)
    assert without.strategies[0].id == store["same_words"]


def test_graph_brings_linked_skills(kb: KnowledgeBase, store: dict[str, str]) -> None:
    bundle = kb.retrieve("Compensate Bob for the overcharged subscription", k=1)
    assert bundle.strategies[0].id == store["same_procedure"]
    ids = [s.id for s in bundle.skills]
    assert store["skill"] in ids


@pytest.mark.parametrize("budget", [60, 120, 400])
def test_context_stays_within_budget(kb: KnowledgeBase, store: dict[str, str], budget: int) -> None:
    bundle = kb.retrieve("Refund a client who was billed twice", k=5, budget_tokens=budget)
    assert bundle.tokens == kb.embedder.count_tokens(bundle.context)
    assert 0 < bundle.tokens <= budget


def test_refine_next_steps_and_repairs(kb: KnowledgeBase, store: dict[str, str]) -> None:
    so_far = run("Compensate Carol for a double charge", [("lookup_customer", "c-21")])["steps"]
    bundle = kb.refine("Compensate Carol for a double charge", so_far, k=3)
    assert bundle.next_steps[0].id == store["same_procedure"]
    assert "fetch_invoice" in bundle.next_steps[0].text
    failed = kb.refine(
        "Compensate Carol for a double charge",
        so_far,
        error="Error: invoice not fetched",
        k=3,
        budget_tokens=200,
    )
    assert any(r.id == store["failure"] for r in failed.repairs)
    assert failed.tokens == kb.embedder.count_tokens(failed.context) <= 200
    assert failed.skills and failed.skills[0].id == store["skill"]


def test_refine_accepts_chat_messages(kb: KnowledgeBase, store: dict[str, str]) -> None:
    messages = [
        {"role": "user", "content": "I was charged twice, please compensate me"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "1",
                    "type": "function",
                    "function": {"name": "lookup_customer", "arguments": '{"q": "Dan"}'},
                }
            ],
        },
        {"role": "tool", "name": "lookup_customer", "content": "c-40"},
    ]
    bundle = kb.refine("Compensate Dan for a double charge", messages, k=2)
    assert bundle.next_steps and bundle.next_steps[0].id == store["same_procedure"]


def test_windows_are_repaired(kb: KnowledgeBase, store: dict[str, str]) -> None:
    kb.store.windows.drop()  # as if the process died between the record and its windows
    kb.store.sql.set_meta({f"windows:{kb.namespace}": "{}"})
    so_far = run("Compensate Carol", [("lookup_customer", "c-21")])["steps"]
    assert kb.refine("Compensate Carol", so_far).next_steps
    assert kb.rebuild_windows() > 0
