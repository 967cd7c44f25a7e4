"""Skill tests in the sandbox, the status lifecycle, and curation helpers."""

from __future__ import annotations

from typing import Any

import pytest

from skills import (
    RunLimits,
    SkillError,
    TestOutcome,
    approve,
    bump_version,
    next_status,
    parameter_signature,
    run_tests,
    should_prune,
)

PROGRAM = (
    "def run(a, b):\n    if b == 0:\n        raise ValueError('b is zero')\n    return a // b\n"
)


def skill_with(tests: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "divide",
        "description": "Integer division.",
        "program": PROGRAM,
        "mode": "executable",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
        "returns": {"type": "integer"},
        "tests": tests,
    }


def outcome(passed: bool) -> TestOutcome:
    return TestOutcome("t", {}, passed, None, None, 0.0)


def test_run_tests() -> None:
    skill = skill_with(
        [
            {"name": "divides", "params": {"a": 7, "b": 2}, "expect": 3},
            {"name": "runs", "params": {"a": 1, "b": 1}},
            {"name": "zero", "params": {"a": 1, "b": 0}, "expect_error": True},
            {"name": "bad-param", "params": {"a": "x", "b": 1}, "expect_error": True},
            {"name": "wrong", "params": {"a": 9, "b": 3}, "expect": 4},
            {"name": "not-raising", "params": {"a": 1, "b": 1}, "expect_error": True},
            {"name": "crash", "params": {"a": 1, "b": 0}},
        ]
    )
    outcomes = run_tests(skill, limits=RunLimits(timeout=5))
    passed = {o.name: o.passed for o in outcomes}
    assert passed == {
        "divides": True,
        "runs": True,
        "zero": True,
        "bad-param": True,
        "wrong": False,
        "not-raising": False,
        "crash": False,
    }
    errors = {o.name: o.error for o in outcomes}
    assert errors["wrong"] == "expected 4, got 3"
    assert "ValueError: b is zero" in (errors["crash"] or "")
    assert outcomes[0].value == 3 and outcomes[0].to_dict()["params"] == {"a": 7, "b": 2}


def test_run_tests_refuses_guided() -> None:
    with pytest.raises(SkillError, match="approve it instead"):
        run_tests({"name": "g", "mode": "guided", "steps": ["do it"]})


@pytest.mark.parametrize(
    ("current", "results", "expected"),
    [
        ("draft", [True, True], "validated"),
        ("draft", [True, False], "draft"),
        ("draft", [], "draft"),
        ("approved", [True], "validated"),
        ("validated", [True], "validated"),
        ("validated", [False, True], "broken"),
        ("validated", [], "validated"),
        ("broken", [True], "validated"),
        ("broken", [False], "broken"),
        ("deprecated", [True], "deprecated"),
        ("deprecated", [False], "deprecated"),
    ],
)
def test_next_status(current: str, results: list[bool], expected: str) -> None:
    assert next_status(current, [outcome(p) for p in results]) == expected


def test_next_status_errors() -> None:
    with pytest.raises(SkillError, match="approve them"):
        next_status("draft", [outcome(True)], mode="guided")
    with pytest.raises(SkillError, match="unknown status"):
        next_status("shiny", [])


def test_approve() -> None:
    assert approve("draft", "guided") == "approved"
    with pytest.raises(SkillError, match="passing tests"):
        approve("draft", "executable")
    with pytest.raises(SkillError, match="only a draft"):
        approve("deprecated", "guided")


def test_parameter_signature() -> None:
    schema = {
        "type": "object",
        "properties": {"b": {"type": ["string", "integer"]}, "a": {"type": "integer"}, "c": {}},
    }
    assert parameter_signature(schema) == (("a", "integer"), ("b", "integer|string"), ("c", "any"))
    assert parameter_signature({}) == ()


def test_bump_version() -> None:
    skill = {"name": "x", "version": 2, "status": "validated", "tags": ["a"]}
    bumped = bump_version(skill)
    assert bumped["version"] == 3 and bumped["status"] == "draft"
    bumped["tags"].append("b")
    assert skill == {"name": "x", "version": 2, "status": "validated", "tags": ["a"]}
    assert bump_version(skill, reset_status=False)["status"] == "validated"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((10, 2, 8, 1.0), "failed 8 of 10"),
        ((3, 0, 3, 1.0), None),
        ((10, 9, 1, 1.0), None),
        ((10, 9, 1, 120.0), "unused for 120 days"),
        ((0, 0, 0, None), None),
    ],
)
def test_should_prune(args: tuple[int, int, int, float | None], needle: str | None) -> None:
    reason = should_prune(*args, min_uses=5, max_failure_rate=0.5, max_idle_days=90)
    if needle is None:
        assert reason is None
    else:
        assert reason is not None and needle in reason
