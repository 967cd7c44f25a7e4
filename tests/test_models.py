"""The data model: validation messages that name the field, explicit limits, ids and skill names.

These are logic tests: the store they write to uses the deterministic ``fake_kb`` embedder, since
nothing here depends on what the text means.
"""

from __future__ import annotations

from typing import Any

import pytest

from kb.errors import Conflict, Invalid
from kb.models import (
    MAX_BATCH,
    MAX_ITEMS,
    MAX_STEP_TEXT,
    MAX_STEPS,
    MAX_TEXT,
    ExperienceCreate,
    SkillCreate,
    kind_of,
    new_id,
)
from kb.service import KnowledgeBase


def _steps(n: int) -> list[dict[str, Any]]:
    return [{"index": i, "role": "assistant", "content": f"step {i}"} for i in range(n)]


@pytest.mark.parametrize(
    ("record", "field", "words"),
    [
        ({}, "task", "field required"),
        ({"task": ""}, "task", "at least 1 character"),
        ({"task": "x" * (MAX_TEXT + 1)}, "task", f"limit is {MAX_TEXT}"),
        ({"task": "t", "strategy": "s" * (MAX_TEXT + 1)}, "strategy", f"limit is {MAX_TEXT}"),
        ({"task": "t", "outcome": "won"}, "outcome", "success"),
        ({"task": "t", "score": 1.5}, "score", "less than or equal to 1"),
        ({"task": "t", "steps": _steps(MAX_STEPS + 1)}, "steps", f"the limit is {MAX_STEPS}"),
        ({"task": "t", "tags": ["x"] * (MAX_ITEMS + 1)}, "tags", f"at most {MAX_ITEMS}"),
        ({"task": "t", "tags": [" "]}, "tags", "1 to 100 characters"),
        ({"task": "t", "lessons": ["l" * (MAX_TEXT + 1)]}, "lessons", "lessons item"),
        ({"task": "t", "colour": "red"}, "colour", "extra"),
        (
            {"task": "t", "steps": [{"index": 0, "content": "c" * (MAX_STEP_TEXT + 1)}]},
            "steps[0].content",
            f"limit is {MAX_STEP_TEXT}",
        ),
        ({"task": "t", "steps": [{"index": 0}, {"index": 2}]}, "steps[1].index", "0, 1, 2"),
        ({"task": "t", "steps": [{"index": -1}]}, "steps.0.index", "greater than or equal to 0"),
    ],
    ids=lambda value: None if isinstance(value, dict) else str(value)[:30],
)
def test_bad_experience_is_refused_with_the_field_named(
    fake_kb: KnowledgeBase, record: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(Invalid) as info:
        fake_kb.add_experience(record)
    message = str(info.value)
    assert field in message
    assert words.lower() in message.lower()
    assert fake_kb.stats().experiences == 0


def test_limits_are_inclusive(fake_kb: KnowledgeBase) -> None:
    """Exactly at each limit is accepted; the stored record keeps every step and character."""
    record = {
        "task": "t" * MAX_TEXT,
        "steps": _steps(MAX_STEPS),
        "tags": [f"tag{i}" for i in range(MAX_ITEMS)],
    }
    stored = fake_kb.get_experience(fake_kb.add_experience(record).id)
    assert len(stored.task) == MAX_TEXT
    assert [s.index for s in stored.steps] == list(range(MAX_STEPS))
    assert len(stored.tags) == MAX_ITEMS


def test_batch_over_max_batch_is_refused_before_anything_is_written(fake_kb: KnowledgeBase) -> None:
    records = [{"task": f"task {i}"} for i in range(MAX_BATCH + 1)]
    with pytest.raises(Invalid, match=f"at most {MAX_BATCH} experiences per call"):
        fake_kb.add_experiences(records)
    assert fake_kb.stats().experiences == 0


def test_batch_is_validated_whole_before_anything_is_written(fake_kb: KnowledgeBase) -> None:
    records: list[dict[str, Any]] = [
        {"task": "fine one"},
        {"task": "fine two"},
        {"outcome": "success"},
    ]
    with pytest.raises(Invalid) as info:
        fake_kb.add_experiences(records)
    assert "experience 2" in str(info.value)
    assert "task" in str(info.value)
    assert fake_kb.stats().experiences == 0
    assert fake_kb.list_experiences() == []


def test_ids_carry_their_kind(fake_kb: KnowledgeBase) -> None:
    exp_id = fake_kb.add_experience({"task": "an experience"}).id
    skill = fake_kb.add_skill({"name": "a-skill", "description": "does a thing"})
    assert exp_id.startswith("exp_")
    assert skill.id.startswith("skl_")
    assert kind_of(exp_id) == "experience"
    assert kind_of(skill.id) == "skill"
    assert kind_of("foo_123") is None


def test_new_ids_are_unique_and_sortable_by_time() -> None:
    ids = [new_id("exp") for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    stamps = [i.split("_", 1)[1][:12] for i in ids]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize("name", ["a", "refund-order", "v2-api", "x" * 64, "a1-b2-c3", "0day"])
def test_valid_skill_names(fake_kb: KnowledgeBase, name: str) -> None:
    skill = fake_kb.add_skill({"name": name, "description": "guidance"})
    assert fake_kb.get_skill(name).id == skill.id


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Refund",
        "refund_order",
        "refund--order",
        "-refund",
        "refund-",
        "refund order",
        "x" * 65,
        "réfund",
        "refund.order",
    ],
)
def test_invalid_skill_names_are_refused(fake_kb: KnowledgeBase, name: str) -> None:
    with pytest.raises(Invalid) as info:
        fake_kb.add_skill({"name": name, "description": "guidance"})
    assert "name" in str(info.value)
    assert fake_kb.list_skills(all_versions=True) == []


def test_skill_name_rule_matches_the_model() -> None:
    with pytest.raises(ValueError, match="lowercase letters, digits"):
        SkillCreate(name="Bad_Name", description="d")


def test_store_accepts_a_4000_character_skill_description(fake_kb: KnowledgeBase) -> None:
    description = ("Use this when a customer wants a refund for a damaged item. " * 80)[:4000]
    assert len(description) == 4000
    fake_kb.add_skill({"name": "refund-damaged-item", "description": description})
    assert fake_kb.get_skill("refund-damaged-item").description == description


def test_skill_description_over_the_limit_is_refused(fake_kb: KnowledgeBase) -> None:
    with pytest.raises(Invalid, match="description"):
        fake_kb.add_skill({"name": "too-long", "description": "d" * (MAX_TEXT + 1)})


def test_executable_skill_needs_a_program(fake_kb: KnowledgeBase) -> None:
    with pytest.raises(Invalid, match="program"):
        fake_kb.add_skill({"name": "no-code", "description": "d", "mode": "executable"})
    guided = fake_kb.add_skill({"name": "prose-only", "description": "d"})
    assert guided.mode == "guided"
    program = "def run(x):\n    return x\n"
    executable = fake_kb.add_skill({"name": "with-code", "description": "d", "program": program})
    assert executable.mode == "executable"


def test_duplicate_skill_name_is_a_conflict(fake_kb: KnowledgeBase) -> None:
    fake_kb.add_skill({"name": "only-once", "description": "d"})
    with pytest.raises(Conflict, match="already exists"):
        fake_kb.add_skill({"name": "only-once", "description": "other"})


def test_create_model_round_trips_through_json() -> None:
    record = ExperienceCreate(
        task="refund a damaged blender",
        outcome="success",
        steps=[
            {"index": 0, "role": "user", "content": "it broke"},
            {
                "index": 1,
                "role": "assistant",
                "kind": "tool_call",
                "tool": "refund",
                "args": {"order": "#A1"},
            },
        ],
        tags=["refund", " refund ", "shop"],
    )
    assert record.tags == ["refund", "shop"]
    assert ExperienceCreate.model_validate_json(record.model_dump_json()) == record
