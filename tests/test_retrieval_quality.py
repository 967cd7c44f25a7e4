"""Fusion, near-duplicate collapse, relevance floors and field-aware vectors.

The fusion and collapse arithmetic is checked on its own; everything about meaning uses the real
bundled model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kb import documents as docs
from kb.config import Settings
from kb.embeddings import HashEmbedder, SentenceTransformerEmbedder
from kb.models import Skill
from kb.retrieval import FLOORS, Weights, collapse_duplicates, fuse
from kb.service import KnowledgeBase

pytestmark = pytest.mark.timeout(300)


# -- fusion and collapse arithmetic -------------------------------------------------------------
def test_score_fusion_scales_each_signal_and_reports_contributions() -> None:
    rankings = {
        "vector": [("a", 0.9), ("b", 0.5), ("c", 0.4)],
        "lexical": [("c", 12.0), ("a", 3.0)],
    }
    fused = {f.id: f for f in fuse(rankings, Weights(vector=1.0, lexical=0.5))}
    # cosine: min-max over its list; BM25: divided by the best
    assert fused["a"].signals["vector"].contribution == pytest.approx(1.0)
    assert fused["b"].signals["vector"].contribution == pytest.approx(0.2)
    assert fused["c"].signals["vector"].contribution == pytest.approx(0.0)
    assert fused["c"].signals["lexical"].contribution == pytest.approx(0.5)
    assert fused["a"].signals["lexical"].contribution == pytest.approx(0.125)
    assert fused["a"].score == pytest.approx(1.125)
    assert [f.id for f in fuse(rankings, Weights(vector=1.0, lexical=0.5))] == ["a", "c", "b"]
    # the raw scores and ranks stay as the signals gave them
    assert fused["c"].signals["lexical"].score == 12.0
    assert fused["c"].signals["lexical"].rank == 1


def test_score_fusion_keeps_gaps_that_rank_fusion_loses() -> None:
    """A near tie in one signal and a clear win in the other: score fusion follows the clear
    win, reciprocal rank fusion sees two first places and two second places."""
    rankings = {
        "vector": [("a", 0.80), ("b", 0.79), ("z", 0.1)],
        "lexical": [("b", 20.0), ("a", 1.0)],
    }
    assert fuse(rankings, Weights(vector=1.0, lexical=1.0))[0].id == "b"
    rrf = fuse(rankings, Weights(vector=1.0, lexical=1.0, fusion="rrf"))
    assert rrf[0].score == pytest.approx(rrf[1].score)
    assert rrf[0].signals["vector"].contribution == pytest.approx(1 / 21)


def test_collapse_keeps_the_best_of_each_group_and_lists_the_rest() -> None:
    x, y = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    vectors = {"a": x, "b": x * 3 + 0.01 * y, "c": y, "d": x, "e": y}
    groups = collapse_duplicates(
        ["a", "b", "c", "d", "e", "f"], vectors, lambda p, q: {p, q} != {"a", "d"}
    )
    assert groups == {"a": ["b"], "c": ["e"], "d": [], "f": []}


# -- field-aware vectors --------------------------------------------------------------------------
def test_a_skill_vector_is_the_weighted_sum_of_its_fields(tmp_path: Path) -> None:
    model = HashEmbedder()
    skill = {
        "name": "refund-order",
        "description": "Refund a delivered order to the original payment method.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "description": "the order"}},
        },
        "steps": ["Find the order.", "Refund it."],
        "status": "approved",
    }
    with KnowledgeBase.open(tmp_path / "s", embedder=model) as kb:
        stored = kb.get_skill(kb.add_skill(skill).name)
        vector = kb.store.items.vectors([stored.id])[stored.id]
    fields = docs.skill_fields(Skill.model_validate(stored.model_dump()))
    assert fields["name"] == "refund order"
    assert fields["parameters"] == "order id: the order"
    expected = sum(
        docs.SKILL_VECTOR[name] * model.encode([text])[0] for name, text in fields.items()
    )
    expected = expected / np.linalg.norm(expected)
    assert np.allclose(vector, expected, atol=1e-5)


def test_old_vectors_are_reported_by_doctor_and_fixed_by_reindex(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "s", embedder=HashEmbedder()) as kb:
        kb.add_experience({"task": "refund an order", "outcome": "success"})
        check = next(c for c in kb.doctor().checks if c.name == "vectors made the current way")
        assert check.ok
        kb.store.sql.set_meta({"vector_format": "one-text"})  # as a store before fields
        check = next(c for c in kb.doctor().checks if c.name == "vectors made the current way")
        assert not check.ok
        assert "kb reindex" in check.detail
        kb.reindex()
        assert kb.store.vector_format_matches()


# -- with the real model ------------------------------------------------------------------------
ADD = {
    "name": "add-numbers",
    "description": "Add two integers and return their sum.",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
    "steps": ["Take a and b.", "Return a + b."],
    "status": "approved",
}


def _exp(task: str, tools: list[str], outcome: str = "success", **extra: Any) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"index": 0, "role": "user", "content": task}]
    for tool in tools:
        steps.append({"index": len(steps), "role": "assistant", "kind": "tool_call", "tool": tool})
        steps.append({"index": len(steps), "role": "tool", "kind": "observation", "tool": tool})
    return {"task": task, "outcome": outcome, "steps": steps, **extra}


@pytest.fixture(scope="module")
def kb(
    tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder
) -> Iterator[KnowledgeBase]:
    path = tmp_path_factory.mktemp("quality") / "store"
    with KnowledgeBase.open(path, settings=Settings(), embedder=embedder) as store:
        yield store


@pytest.fixture(scope="module")
def ids(kb: KnowledgeBase) -> dict[str, Any]:
    refund = ["find_user", "get_order", "refund_order"]
    task = "Refund the customer whose blender arrived broken"
    twins = kb.add_experiences([_exp(task, refund) for _ in range(3)])
    other = kb.add_experience(
        _exp("Refund the customer whose kettle arrived broken", ["find_user", "refund_order"])
    )
    failed = kb.add_experience(
        _exp(task, refund, outcome="failure", lessons=["check the payment method first"])
    )
    unrelated_failure = kb.add_experience(
        _exp("Compile the quarterly tax report for the accountant", ["open_ledger"], "failure")
    )
    kb.add_skill(ADD)
    return {
        "twins": [r.id for r in twins],
        "other": other.id,
        "failed": failed.id,
        "unrelated_failure": unrelated_failure.id,
    }


def test_near_duplicates_collapse_into_one_hit_and_stay_reachable(
    kb: KnowledgeBase, ids: dict[str, Any]
) -> None:
    hits = kb.search("refund a broken blender", kind="experience", outcome="success")
    twins = set(ids["twins"])
    shown = [h for h in hits if h.id in twins]
    assert len(shown) == 1
    assert set(shown[0].duplicates) == twins - {shown[0].id}
    assert ids["other"] in {h.id for h in hits}  # a similar run with other tools is kept
    every = kb.search(
        "refund a broken blender", kind="experience", outcome="success", diverse=False
    )
    assert twins <= {h.id for h in every}
    assert all(not h.duplicates for h in every)


def test_retrieve_collapses_duplicates_too(kb: KnowledgeBase, ids: dict[str, Any]) -> None:
    bundle = kb.retrieve("Refund the customer whose blender arrived broken")
    twins = set(ids["twins"])
    shown = [s for s in bundle.strategies if s.id in twins]
    assert len(shown) == 1
    assert set(shown[0].duplicates) == twins - {shown[0].id}
    assert ids["other"] in {s.id for s in bundle.strategies}


def test_a_skill_below_the_floor_is_not_offered(kb: KnowledgeBase, ids: dict[str, Any]) -> None:
    assert not kb.retrieve("exchange a keyboard").skills
    offered = kb.retrieve("add two integers together and give me the sum").skills
    assert [s.title for s in offered] == ["add-numbers"]
    # the skill is still found when searched for directly: floors are retrieve's
    assert kb.search_skills("exchange a keyboard")[0].title == "add-numbers"


def test_a_pitfall_below_the_floor_is_not_offered(kb: KnowledgeBase, ids: dict[str, Any]) -> None:
    bundle = kb.retrieve("Refund the customer whose blender arrived broken")
    pitfalls = {p.id for p in bundle.pitfalls}
    assert ids["failed"] in pitfalls
    assert ids["unrelated_failure"] not in pitfalls
    bundle = kb.retrieve("Compile the quarterly tax report")
    assert ids["unrelated_failure"] in {p.id for p in bundle.pitfalls}


def test_floors_are_between_zero_and_one() -> None:
    assert 0 < FLOORS.skill < 1
    assert 0 < FLOORS.pitfall < 1
