"""Admission control (dedupe / novelty) and outcome-aware ranking: logic only, fake embedder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kb.embeddings import HashEmbedder
from kb.errors import Invalid
from kb.retrieval import OutcomeRanking, outcome_factor
from kb.service import KnowledgeBase
from kb.services import loop


def exp(task: str, tools: list[str], outcome: str = "success") -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"index": 0, "role": "user", "content": task}]
    for tool in tools:
        steps.append(
            {
                "index": len(steps),
                "role": "assistant",
                "kind": "tool_call",
                "tool": tool,
                "args": {},
            }
        )
        steps.append(
            {
                "index": len(steps),
                "role": "tool",
                "kind": "observation",
                "tool": tool,
                "result": "ok",
            }
        )
    return {"task": task, "outcome": outcome, "steps": steps}


TASK = "cancel the pending order and refund the card"
TOOLS = ["find_user", "get_order", "cancel_order"]


def test_default_policy_admits_every_add(fake_kb: KnowledgeBase) -> None:
    first = fake_kb.add_experience(exp(TASK, TOOLS))
    second = fake_kb.add_experience(exp(TASK, TOOLS))
    assert (first.action, second.action) == ("added", "added")
    assert first.id != second.id
    assert fake_kb.stats().experiences == 2


def test_dedupe_merges_and_keeps_the_original(fake_kb: KnowledgeBase) -> None:
    first = fake_kb.add_experience(exp(TASK, TOOLS), policy="dedupe")
    second = fake_kb.add_experience(exp(TASK, TOOLS), policy="dedupe")
    assert first.action == "added"
    assert second.action == "merged" and second.id == first.id
    canonical = fake_kb.get_experience(first.id)
    assert canonical.count == 2
    [original_id] = canonical.merged_ids
    original = fake_kb.get_experience(original_id)  # nothing lost
    assert original.task == TASK and len(original.steps) == len(canonical.steps)
    assert any(e.kind == "merged_into" for e in fake_kb.edges(first.id))
    hits = fake_kb.search(TASK, 10)
    assert [h.id for h in hits] == [first.id]


@pytest.mark.parametrize(
    "other",
    [
        exp(TASK, TOOLS, outcome="failure"),  # same meaning and procedure, other outcome
        exp(TASK, ["find_user", "cancel_order"]),  # other signature
        exp("translate the quarterly report into French", TOOLS),  # other meaning
    ],
)
def test_dedupe_admits_what_differs(fake_kb: KnowledgeBase, other: dict[str, Any]) -> None:
    fake_kb.add_experience(exp(TASK, TOOLS), policy="dedupe")
    assert fake_kb.add_experience(other, policy="dedupe").action == "added"


def test_novelty_merges_close_procedures(fake_kb: KnowledgeBase) -> None:
    tools = [f"tool_{n}" for n in range(10)]
    near = [*tools[:9], "tool_x"]  # multiset Jaccard 9/11
    fake_kb.add_experience(exp(TASK, tools))
    assert fake_kb.add_experience(exp(TASK, near), policy="dedupe").action == "added"
    assert fake_kb.add_experience(exp(TASK, near), policy="novelty").action == "merged"


def test_batch_dedupe_within_the_batch(fake_kb: KnowledgeBase) -> None:
    results = fake_kb.admit_experiences(
        [exp(TASK, TOOLS)] * 3 + [exp("other task", TOOLS)], policy="dedupe"
    )
    assert [r.action for r in results] == ["added", "merged", "merged", "added"]
    assert results[1].id == results[0].id
    assert fake_kb.get_experience(results[0].id).count == 3
    ids = [r.id for r in fake_kb.add_experiences([exp(TASK, TOOLS)], policy="dedupe")]
    assert ids == [results[0].id]


def test_unknown_policy(fake_kb: KnowledgeBase) -> None:
    with pytest.raises(Invalid, match="policy"):
        fake_kb.add_experience(exp(TASK, TOOLS), policy="sometimes")


def test_outcome_factor_formula() -> None:
    params = OutcomeRanking(alpha=1.0, min_uses=5, recency=0.2, half_life_days=90)
    assert outcome_factor(0, 0, 0, params) == pytest.approx(1.0)
    assert outcome_factor(10, 10, 0, params) == pytest.approx(1.5)
    assert outcome_factor(10, 0, 0, params) == pytest.approx(0.5)
    assert outcome_factor(2, 2, 0, params) == pytest.approx(1 + 0.5 * 2 / 5)
    assert outcome_factor(0, 0, 90, params) == pytest.approx(0.9)


def test_feedback_reorders_when_outcome_aware(fake_kb: KnowledgeBase) -> None:
    good = fake_kb.add_experience(exp(TASK, TOOLS)).id
    bad = fake_kb.add_experience(exp(TASK, TOOLS)).id
    for _ in range(5):
        fake_kb.feedback(good, success=True)
        fake_kb.feedback(bad, success=False)
    assert fake_kb.get_experience(bad).uses == 5
    plain = [h.id for h in fake_kb.search(TASK, 2, outcome_aware=False)]
    aware = fake_kb.search(TASK, 2, outcome_aware=True)
    assert set(plain) == {good, bad}
    assert [h.id for h in aware] == [good, bad]
    assert aware[0].score > aware[1].score


def test_windows_are_built_on_the_write_path_and_refine_states_what_is_pending(
    fake_kb: KnowledgeBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [
        r.id for r in fake_kb.add_experiences([exp(f"task number {n}", TOOLS) for n in range(40)])
    ]
    assert fake_kb.store.windows.distinct("exp_id") == set(ids)  # complete when the write returns
    assert fake_kb.store.sql.get_meta(f"windows_pending:{fake_kb.namespace}") == "[]"
    so_far = exp("task number 3", TOOLS[:1])["steps"]
    first = fake_kb.refine("task number 3", so_far)
    assert first.next_steps and first.pending == 0 and "Incomplete" not in first.context

    # a lossless import embeds nothing: its windows are pending until a refine builds them
    fake_kb.export(tmp_path / "all.jsonl")
    with KnowledgeBase.open(tmp_path / "copy", embedder=HashEmbedder()) as copy:
        copy.import_file(tmp_path / "all.jsonl")
        assert copy.store.windows.distinct("exp_id") == set()
        monkeypatch.setattr(loop, "SYNC_BUDGET_S", 0.0)  # no time to build: say so
        hurried = copy.refine("task number 3", so_far)
        assert hurried.pending == 40 and not hurried.next_steps
        assert "Incomplete: the step windows of 40 stored runs" in hurried.context
        monkeypatch.undo()
        complete = copy.refine("task number 3", so_far)
        assert complete.pending == 0 and complete.next_steps
        assert copy.store.windows.distinct("exp_id") == set(ids)
