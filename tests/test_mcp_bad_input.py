"""Bad input through MCP: a clear error naming the problem, the server stays up, nothing partial
is stored. (Malformed JSON and oversized HTTP bodies are in test_mcp_transports.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client

from kb.embeddings import SentenceTransformerEmbedder
from kb.limits import STEP_TEXT_CHARS
from kb.service import KnowledgeBase
from mcp_server.server import MAX_REQUEST_BYTES, create_server

BIG_STEP = "x" * 19_000  # under the per-field limit; many of them exceed the request limit
OVERSIZED = [{"content": BIG_STEP} for _ in range(MAX_REQUEST_BYTES // 19_000 + 2)]
LIMIT = f"the limit is {MAX_REQUEST_BYTES}"

CASES: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "oversized record",
        "record_experience",
        {"task": "huge", "outcome": "success", "steps": OVERSIZED},
        LIMIT,
    ),
    (
        "oversized skill",
        "propose_skill",
        {"name": "huge", "description": "d", "steps": ["x" * 45_000] * 200},
        LIMIT,
    ),
    (
        "deeply nested arguments",
        "record_experience",
        {
            "task": "deep",
            "outcome": "success",
            "steps": [{"kind": "tool_call", "tool": "t", "args": json.loads("[" * 40 + "]" * 40)}],
        },
        "steps[0].args",
    ),
    (
        "deeply nested skill parameters",
        "propose_skill",
        {"name": "deep", "description": "d", "parameters": {"a": json.loads("[" * 40 + "]" * 40)}},
        "more than 32 levels deep",
    ),
    (
        "field too long",
        "record_experience",
        {"task": "t" * 20_001, "outcome": "success"},
        "at most 20000 characters",
    ),
    (
        "step text over the step limit",
        "record_experience",
        {"task": "t", "outcome": "success", "steps": [{"content": "x" * (STEP_TEXT_CHARS + 1)}]},
        "steps[0].content",
    ),
    ("query of wrong type", "search", {"query": 3}, "query should be a valid string"),
    ("k of wrong type", "search", {"query": "refund", "k": "many"}, "valid integer"),
    ("k out of range", "search", {"query": "refund", "k": 500}, "less than or equal to 50"),
    ("unknown outcome", "record_experience", {"task": "t", "outcome": "great"}, "'success'"),
    (
        "steps not a list",
        "record_experience",
        {"task": "t", "outcome": "success", "steps": "did stuff"},
        "steps",
    ),
    (
        "unknown step field",
        "record_experience",
        {"task": "t", "outcome": "success", "steps": [{"index": 0, "colour": "red"}]},
        "colour",
    ),
    (
        "steps out of order",
        "record_experience",
        {"task": "t", "outcome": "success", "steps": [{"index": 0}, {"index": 5}]},
        "steps must be numbered 0, 1, 2",
    ),
    ("empty task", "record_experience", {"task": "", "outcome": "success"}, "task"),
    ("missing argument", "record_experience", {"task": "t"}, "outcome is required"),
    ("unknown argument", "search", {"query": "refund", "colour": "red"}, "colour"),
    ("bool of wrong type", "record_feedback", {"id": "exp_1", "success": "maybe"}, "success"),
    (
        "unknown experience",
        "get",
        {"id": "exp_0000000000000000000000"},
        "no experience 'exp_0000000000000000000000'",
    ),
    ("unknown skill", "get", {"id": "no-such-skill"}, "no skill named 'no-such-skill'"),
    (
        "feedback on unknown item",
        "record_feedback",
        {"id": "exp_missing", "success": True},
        "no experience 'exp_missing'",
    ),
    (
        "feedback on a foreign id",
        "record_feedback",
        {"id": "banana", "success": True},
        "'banana' is not an experience",
    ),
    (
        "failure feedback without a note",
        "record_feedback",
        {"id": "exp_1", "success": False},
        "note",
    ),
    ("update of nothing", "update_experience", {"id": "exp_1"}, "at least one field"),
    ("update of unknown", "update_experience", {"id": "exp_1", "lessons": ["x"]}, "no experience"),
    ("forget unknown", "forget_experience", {"id": "exp_1", "reason": "r"}, "no experience"),
    ("forget without reason", "forget_experience", {"id": "exp_1"}, "reason is required"),
    (
        "bad skill name",
        "propose_skill",
        {"name": "Not A Slug", "description": "d"},
        "not a valid skill name",
    ),
    ("unknown tool", "drop_database", {}, "Unknown tool"),
]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.mark.parametrize(
    ("tool", "args", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_a_clear_tool_error_and_stores_nothing(
    store: Path,
    embedder: SentenceTransformerEmbedder,
    tool: str,
    args: dict[str, Any],
    expected: str,
) -> None:
    server = create_server(store=store, embedder=embedder, warm=False)

    async def scenario() -> tuple[Any, Any]:
        async with Client(server) as c:
            bad = await c.call_tool_mcp(tool, args)
            # the server is still up and serving
            good = await c.call_tool("search", {"query": "refund"})
            return bad, good

    bad, good = anyio.run(scenario)
    assert bad.is_error
    assert expected in bad.content[0].text
    assert "Traceback" not in bad.content[0].text
    assert good.structured_content["hits"] == []
    assert "\n" not in bad.content[0].text and len(bad.content[0].text) <= 600
    with KnowledgeBase.open(store, embedder=embedder) as kb:
        stats = kb.stats()
    assert (stats.experiences, stats.skills, stats.events) == (0, 0, 0)


def test_unknown_resource_is_a_clear_error(
    store: Path, embedder: SentenceTransformerEmbedder
) -> None:
    server = create_server(store=store, embedder=embedder, warm=False)

    async def scenario() -> str:
        async with Client(server) as c:
            try:
                await c.read_resource("experience://exp_missing")
            except Exception as exc:  # the client raises the MCP error
                return str(exc)
            return ""

    assert "no experience 'exp_missing'" in anyio.run(scenario)
