"""Run a skill's tests in the sandbox and move it through its lifecycle.

Lifecycle of ``next_status(current, outcomes)`` for an executable skill:

============  ==========================  =================================
current       every test passed (>= 1)    any test failed, or no tests run
============  ==========================  =================================
draft         validated                   draft
approved      validated                   approved
validated     validated                   broken (no tests: validated)
broken        validated                   broken
deprecated    deprecated                  deprecated
============  ==========================  =================================

Guided skills have no program to test: ``approve`` moves a guided draft to ``approved``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from skills.errors import ParamError, SkillError
from skills.sandbox import RunLimits, run_program

__all__ = ["STATUSES", "TestOutcome", "approve", "next_status", "run_tests"]

STATUSES = ("draft", "approved", "validated", "broken", "deprecated")


@dataclass
class TestOutcome:
    """The outcome of one skill test."""

    __test__ = False  # not a pytest test class

    name: str
    params: dict[str, Any]
    passed: bool
    value: Any
    error: str | None
    duration: float

    def to_dict(self) -> dict[str, Any]:
        """The outcome as a JSON-ready dict."""
        return asdict(self)


def _mode(skill: Mapping[str, Any]) -> str:
    return str(skill.get("mode") or ("executable" if skill.get("program") else "guided"))


def _same(value: Any, expect: Any) -> bool:
    """Equality after a JSON round trip (tuples equal lists, 1 equals 1.0)."""
    try:
        return bool(json.loads(json.dumps(value)) == json.loads(json.dumps(expect)))
    except (TypeError, ValueError):
        return bool(value == expect)


def run_tests(
    skill: Mapping[str, Any],
    *,
    limits: RunLimits | None = None,
    hidden: Sequence[str | os.PathLike[str]] = (),
) -> list[TestOutcome]:
    """Run every test of an executable skill in the sandbox.

    A test passes when the run succeeds and, if ``expect`` is not None, the value equals it; a
    test with ``expect_error`` passes when the run fails (a bad parameter counts as failing).

    Args:
        skill: a ``SkillCreate``-shaped mapping with ``program`` and ``tests``.
        limits: sandbox limits for each run.
        hidden: paths the sandbox masks (see ``run_program``).

    Returns:
        One ``TestOutcome`` per test, in order (empty when the skill has no tests).

    Raises:
        SkillError: the skill is guided (approve it instead) or has no program.
    """
    name = skill.get("name", "?")
    if _mode(skill) == "guided":
        raise SkillError(f"skill {name!r} is guided: it has no program to test; approve it instead")
    program = skill.get("program")
    if not program:
        raise SkillError(f"skill {name!r} is executable but has no program")
    outcomes = []
    for i, test in enumerate(skill.get("tests") or []):
        params = dict(test.get("params") or {})
        expect = test.get("expect")
        expect_error = bool(test.get("expect_error", False))
        test_name = str(test.get("name") or f"test-{i + 1}")
        try:
            result = run_program(
                str(program),
                params,
                parameters=dict(skill.get("parameters") or {}),
                returns=dict(skill.get("returns") or {}),
                limits=limits,
                hidden=hidden,
            )
        except ParamError as exc:
            outcomes.append(TestOutcome(test_name, params, expect_error, None, str(exc), 0.0))
            continue
        if expect_error:
            passed = not result.ok
            error = None if passed else "expected an error, but the run succeeded"
        elif not result.ok:
            passed, error = False, f"{result.error_type}: {result.error}"
        elif expect is not None and not _same(result.value, expect):
            passed = False
            error = f"expected {json.dumps(expect)}, got {json.dumps(result.value)}"
        else:
            passed, error = True, None
        outcomes.append(
            TestOutcome(test_name, params, passed, result.value, error, result.duration)
        )
    return outcomes


def next_status(current: str, outcomes: Sequence[TestOutcome], *, mode: str = "executable") -> str:
    """The status a skill moves to after its tests ran (see the module table).

    Raises:
        SkillError: unknown status, or a guided skill (approve it instead).
    """
    if current not in STATUSES:
        raise SkillError(f"unknown status {current!r}; expected one of {', '.join(STATUSES)}")
    if mode == "guided":
        raise SkillError("guided skills cannot be validated by tests; approve them instead")
    if current == "deprecated":
        return current
    if outcomes and all(o.passed for o in outcomes):
        return "validated"
    if current == "validated" and outcomes:
        return "broken"
    return current


def approve(current_status: str, mode: str) -> str:
    """Approve a guided draft after human review: ``draft`` -> ``approved``.

    Raises:
        SkillError: the skill is executable (validate it by tests) or not a draft.
    """
    if mode != "guided":
        raise SkillError(
            "only guided skills are approved; executable skills become validated by passing tests"
        )
    if current_status != "draft":
        raise SkillError(f"only a draft can be approved; this skill is {current_status!r}")
    return "approved"
