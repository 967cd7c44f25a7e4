"""Mining recurring tool-call sequences into guided draft skills."""

from __future__ import annotations

from typing import Any

import pytest

from skills import Candidate, SkillError, coverage, is_slug, mine


def call(tool: str, result: str | None = None, **args: Any) -> dict[str, Any]:
    return {"tool": tool, "args": args, "result": result}


def retail_trace(user: str, order: str, reason: str = "no longer needed") -> list[dict[str, Any]]:
    return [
        {"tool": None, "content": "thinking"},
        call("find_user_id_by_email", f'"{user}"', email=f"{user}@example.com"),
        call("get_user_details", f'{{"orders": ["{order}"]}}', user_id=user),
        call("get_order_details", '{"status": "pending"}', order_id=order),
        call("cancel_pending_order", "ok", order_id=order, reason=reason),
    ]


TRACES = [
    ("exp_1", retail_trace("ann", "#W100")),
    ("exp_2", retail_trace("bob", "#W200")),
    ("exp_3", [*retail_trace("cyd", "#W300"), call("think", thought="done")]),
    ("exp_4", [call("search", query="weather"), call("open", url="a")]),
]
TASKS = {"exp_1": "Cancel my pending order, I no longer need it."}


def by_pattern(candidates: list[Candidate]) -> dict[tuple[str, ...], Candidate]:
    return {tuple(c.pattern): c for c in candidates}


def test_support_and_closedness() -> None:
    found = by_pattern(mine(TRACES, tasks=TASKS, min_support=2))
    full = (
        "find_user_id_by_email",
        "get_user_details",
        "get_order_details",
        "cancel_pending_order",
    )
    # every sub-pattern occurs in exactly the same three traces, so only the longest is closed
    assert list(found) == [full]
    candidate = found[full]
    assert candidate.support == 3
    assert candidate.source_ids == ["exp_1", "exp_2", "exp_3"]
    assert candidate.occurrences == 3
    assert mine(TRACES, min_support=4) == []


def test_closed_subpattern_with_larger_support_is_kept() -> None:
    traces = [
        *TRACES,
        (
            "exp_5",
            [
                call("get_order_details", order_id="#W9"),
                call("cancel_pending_order", order_id="#W9", reason="x"),
            ],
        ),
    ]
    found = by_pattern(mine(traces, min_support=2))
    pair = ("get_order_details", "cancel_pending_order")
    assert pair in found and found[pair].support == 4
    assert ("get_user_details", "get_order_details") not in found  # same support as the full run


def test_generalisation_constants_parameters_and_dataflow() -> None:
    (candidate,) = mine(TRACES, tasks=TASKS)
    skill = candidate.skill
    props = skill["parameters"]["properties"]
    assert set(props) == {"email"}
    assert props["email"]["type"] == "string"
    assert skill["parameters"]["required"] == ["email"]
    template = candidate.template
    assert template[0] == {"tool": "find_user_id_by_email", "args": {"email": "{email}"}}
    # user_id and order_id come from earlier results; order_id is then reused (bound)
    assert template[1]["args"] == {"user_id": "{user_id}"}
    assert template[2]["args"] == {"order_id": "{order_id}"}
    assert template[3]["args"] == {"order_id": "{order_id}", "reason": "no longer needed"}
    assert (
        skill["steps"][1]
        == "Call `get_user_details` with user_id={user_id} (from the result of step 1)."
    )
    assert "(from the result of step 2)" in skill["steps"][2]
    assert "(same value as in step 3)" in skill["steps"][3]
    assert 'reason="no longer needed"' in skill["steps"][3]
    assert skill["scope"].endswith("e.g. task: Cancel my pending order, I no longer need it.")
    assert "seen in 3 successful runs" in skill["scope"]
    assert skill["mode"] == "guided" and skill["status"] == "draft" and skill["program"] is None
    assert skill["provenance"] == {"source": "mined"}


def test_type_inference_and_naming() -> None:
    traces = [
        (
            f"e{i}",
            [
                call("set_limit", value=v, flag=f, price=p, tags=t),
                call("check_limit", value=v),
                call("commit"),
            ],
        )
        for i, (v, f, p, t) in enumerate(
            [(1, True, 1, ["a"]), (2, False, 2.5, ["b"]), (3, True, 3, ["c", "d"])]
        )
    ]
    (candidate,) = mine(traces)
    props = candidate.skill["parameters"]["properties"]
    assert props["value"]["type"] == "integer"
    assert props["flag"]["type"] == "boolean"
    assert props["price"]["type"] == "number"
    assert props["tags"]["type"] == "array"
    assert props["value"]["examples"] == [1, 2, 3]
    assert candidate.template[1]["args"] == {"value": "{value}"}  # bound to step 1's value
    assert candidate.template[2] == {"tool": "commit", "args": {}}
    assert candidate.skill["steps"][2] == "Call `commit` with no arguments."


def test_clashing_parameter_names_and_optional_args() -> None:
    traces = [
        ("a", [call("search", query="x", page=1), call("lookup", query="p")]),
        ("b", [call("search", query="y"), call("lookup", query="q")]),
    ]
    (candidate,) = mine(traces)
    schema = candidate.skill["parameters"]
    assert set(schema["properties"]) == {"search_query", "page", "lookup_query"}
    assert "page" not in schema["required"]
    assert set(schema["required"]) == {"search_query", "lookup_query"}


def test_slugs_are_valid_and_unique() -> None:
    long_tool = "an_extremely_long_tool_name_that_goes_on_and_on"
    traces = [
        (f"t{i}", [call(long_tool, x=i), call("Ünïcode Tool!", y=1), call(long_tool, x=i)])
        for i in range(3)
    ]
    candidates = mine(traces, min_length=2, max_length=3)
    names = [c.skill["name"] for c in candidates]
    assert all(is_slug(n) and len(n) <= 64 for n in names)
    assert len(set(names)) == len(names)
    assert mine(TRACES)[0].skill["name"] == (
        "find-user-id-by-email-to-cancel-pending-order-in-4-steps"
    )


def test_coverage_progress_and_cap() -> None:
    seen: list[int] = []
    candidates = mine(TRACES, progress=seen.append)
    assert seen == [1, 2, 3, 4]
    assert coverage(candidates, TRACES) == pytest.approx(0.75)
    assert coverage([], TRACES) == 0.0
    assert coverage(candidates, []) == 0.0
    assert len(mine(TRACES, min_length=1, max_length=1, max_candidates=2)) == 2


def test_bad_input() -> None:
    with pytest.raises(SkillError, match="min_support"):
        mine(TRACES, min_support=0)
    with pytest.raises(SkillError, match="must be a mapping"):
        mine([("x", [{"tool": "a", "args": [1, 2]}])])


def test_runs_of_one_tool_are_one_repeated_step() -> None:
    """Runs of the same call (once per order, per item) collapse into one step, so the miner
    does not emit a near-duplicate skill for every run length."""
    traces = [
        (
            f"e{i}",
            [
                call("find_user", email=f"u{i}@x"),
                *[call("get_order", order_id=f"#{i}{j}") for j in range(n)],
                call("refund"),
            ],
        )
        for i, n in enumerate([1, 2, 3, 4])
    ]
    candidates = mine(traces, min_support=2)
    patterns = [c.pattern for c in candidates]
    assert ["find_user", "get_order", "refund"] in patterns
    assert all(p.count("get_order") <= 1 for p in patterns)
    full = next(c for c in candidates if c.pattern == ["find_user", "get_order", "refund"])
    assert "Repeat it once per item" in full.skill["steps"][1]
