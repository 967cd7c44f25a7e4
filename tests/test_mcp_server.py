"""The MCP server in memory: tools, descriptions, gating, resources, prompt, logs.

Each test opens an in-memory ``fastmcp.Client`` on a server over a real store with the real
bundled model (the session ``embedder``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from pydantic import BaseModel

from kb.embeddings import SentenceTransformerEmbedder
from kb.models import Attribution
from kb.service import KnowledgeBase
from mcp_server.server import TOOLS, create_server

# tool -> the KnowledgeBase method it needs
NEEDS = {fn.__name__: method for fn, method, _ in TOOLS}


def call(fn: Callable[[Client[Any]], Awaitable[Any]], server: Any) -> Any:
    async def main() -> Any:
        async with Client(server) as client:
            return await fn(client)

    return anyio.run(main)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def make(store: Path, embedder: SentenceTransformerEmbedder) -> Callable[..., Any]:
    def factory(**kwargs: Any) -> Any:
        return create_server(store=store, embedder=embedder, warm=False, **kwargs)

    return factory


def built(tool: str) -> bool:
    return hasattr(KnowledgeBase, NEEDS[tool])


def test_tools_are_those_of_built_features_with_compact_complete_descriptions(make: Any) -> None:
    tools = call(lambda c: c.list_tools(), make())
    names = {t.name for t in tools}
    expected = {name for name in NEEDS if built(name)} - {"run_skill"}
    assert names == expected
    for tool in tools:
        description = tool.description or ""
        assert "Example:" in description, tool.name
        assert 120 <= len(description) <= 700, (tool.name, len(description))
        for param, schema in tool.input_schema["properties"].items():
            assert schema.get("description"), f"{tool.name}.{param} has no description"
        assert tool.output_schema is not None, f"{tool.name} has no structured output"


def test_run_skill_needs_allow_run(make: Any) -> None:
    if not built("run_skill"):
        pytest.skip("KnowledgeBase.run_skill is not built yet")
    assert "run_skill" not in {t.name for t in call(lambda c: c.list_tools(), make())}
    assert "run_skill" in {t.name for t in call(lambda c: c.list_tools(), make(allow_run=True))}


def test_record_search_get_feedback(make: Any) -> None:
    async def scenario(c: Client[Any]) -> None:
        added = await c.call_tool(
            "record_experience",
            {
                "task": "refund a damaged blender for order 1042",
                "outcome": "failure",
                "strategy": "refunded before checking the return window",
                "lessons": ["check the return window before refunding"],
                "steps": [
                    {
                        "index": 0,
                        "agent": "support",
                        "kind": "tool_call",
                        "tool": "get_order",
                        "args": {"id": 1042},
                    },
                    {
                        "index": 1,
                        "agent": "support",
                        "kind": "error",
                        "tool": "refund",
                        "error": "403: order not eligible",
                    },
                ],
                "domain": "retail",
                "tags": ["refund"],
            },
        )
        exp_id = added.structured_content["id"]
        assert exp_id.startswith("exp_")
        await c.call_tool(
            "record_experience", {"task": "write a haiku about autumn", "outcome": "success"}
        )

        found = await c.call_tool(
            "search_experiences", {"query": "refund broken kitchen appliance", "k": 2}
        )
        hits = found.structured_content["hits"]
        assert hits[0]["id"] == exp_id
        assert hits[0]["provenance"]["source"] == "mcp"
        failures = await c.call_tool("search_experiences", {"query": "haiku", "outcome": "failure"})
        assert {h["id"] for h in failures.structured_content["hits"]} == {exp_id}

        full = await c.call_tool("get_experience", {"experience_id": exp_id})
        assert full.structured_content["steps"][1]["error"] == "403: order not eligible"
        assert full.structured_content["namespace"] == "default"

        counts = await c.call_tool(
            "record_feedback", {"item_id": exp_id, "success": True, "note": "saved me a refund"}
        )
        assert counts.structured_content["uses"] == 1

    call(scenario, make())


def test_skills_propose_get_search_and_resources(make: Any) -> None:
    if not built("propose_skill"):
        pytest.skip("KnowledgeBase.propose_skill is not built yet")

    async def scenario(c: Client[Any]) -> None:
        proposed = await c.call_tool(
            "propose_skill",
            {
                "name": "csv-export",
                "description": "Export a table to a CSV file. Use when a user asks for a spreadsheet.",
                "steps": ["open the table", "choose Export > CSV"],
                "tags": ["export"],
            },
        )
        assert proposed.structured_content["status"] == "draft"
        got = await c.call_tool("get_skill", {"name": "csv-export"})
        assert got.structured_content["id"] == proposed.structured_content["id"]
        default = await c.call_tool("search_skills", {"query": "export a spreadsheet"})
        assert default.structured_content["hits"] == []  # drafts are hidden by default
        drafts = await c.call_tool(
            "search_skills", {"query": "export a spreadsheet", "include_drafts": True}
        )
        assert drafts.structured_content["hits"][0]["title"] == "csv-export"

        if built_resource:
            contents = await c.read_resource("skill://csv-export")
            assert contents[0].text.startswith("---")
            assert "name: csv-export" in contents[0].text

        added = await c.call_tool(
            "record_experience", {"task": "export orders", "outcome": "success"}
        )
        exp_id = added.structured_content["id"]
        record = json.loads((await c.read_resource(f"experience://{exp_id}"))[0].text)
        assert record["id"] == exp_id and record["task"] == "export orders"

    built_resource = hasattr(KnowledgeBase, "skill_md")
    call(scenario, make())


def test_run_skill_runs_the_program(
    make: Any, store: Path, embedder: SentenceTransformerEmbedder
) -> None:
    if not built("run_skill"):
        pytest.skip("KnowledgeBase.run_skill is not built yet")
    with KnowledgeBase.open(store, embedder=embedder) as kb:
        kb.add_skill(
            {
                "name": "add-numbers",
                "description": "Add two numbers.",
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                    "required": ["a", "b"],
                },
                "program": "def run(a, b):\n    return a + b\n",
                "status": "validated",
            }
        )

    async def scenario(c: Client[Any]) -> Any:
        return (
            await c.call_tool("run_skill", {"name": "add-numbers", "params": {"a": 2, "b": 3}})
        ).structured_content

    result = call(scenario, make(allow_run=True))
    assert result["ok"] is True and result["value"] == 5


def test_prompt_walks_the_loop(make: Any) -> None:
    async def scenario(c: Client[Any]) -> str:
        prompts = await c.list_prompts()
        assert [p.name for p in prompts] == ["reason_retrieve_refine"]
        result = await c.get_prompt("reason_retrieve_refine", {"task": "refund order 1042"})
        return str(result.messages[0].content.text)

    text = call(scenario, make())
    assert "refund order 1042" in text
    for word in ("retrieve", "Act", "Refine", "record_experience", "record_feedback"):
        assert word in text
    assert "never as instructions" in text


class FakeBundle(BaseModel):
    context: str
    items: list[str]


def test_loop_and_trace_tools_pass_arguments_through(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring of retrieve, refine and trace_failure, with stand-ins for the service methods."""
    seen: dict[str, Any] = {}

    def retrieve(self: KnowledgeBase, task: str, **kwargs: Any) -> FakeBundle:
        seen["retrieve"] = (self.namespace, task, kwargs)
        return FakeBundle(context="do X, avoid Y", items=["exp_1"])

    def refine(
        self: KnowledgeBase, task: str, trajectory: list[dict[str, Any]], **kwargs: Any
    ) -> dict[str, Any]:
        seen["refine"] = (task, trajectory, kwargs)
        return {"context": "repair: retry with Z"}

    def trace(self: KnowledgeBase, target: Any, *, method: str = "auto") -> Attribution:
        seen["trace"] = (target, method)
        return Attribution(agent="support", step=1, reason="refund before check", confidence=0.8)

    for name, fn in (("retrieve", retrieve), ("refine", refine), ("trace", trace)):
        monkeypatch.setattr(KnowledgeBase, name, fn, raising=False)

    async def scenario(c: Client[Any]) -> list[Any]:
        r1 = await c.call_tool(
            "retrieve",
            {"task": "refund order", "k": 3, "domain": "retail", "plan": ["look up order"]},
        )
        r2 = await c.call_tool(
            "refine",
            {
                "task": "refund order",
                "error": "403",
                "trajectory": [{"index": 0, "tool": "refund"}],
            },
        )
        r3 = await c.call_tool(
            "trace_failure", {"steps": [{"index": 0, "tool": "refund"}], "task": "refund order"}
        )
        r4 = await c.call_tool("trace_failure", {}, raise_on_error=False)
        return [r1.structured_content, r2.structured_content, r3.structured_content, r4]

    r1, r2, r3, r4 = call(scenario, make())
    assert r1 == {"context": "do X, avoid Y", "items": ["exp_1"]}
    assert seen["retrieve"] == (
        "default",
        "refund order",
        {"plan": ["look up order"], "k": 3, "domain": "retail"},
    )
    assert r2 == {"context": "repair: retry with Z"}
    assert seen["refine"][1][0]["tool"] == "refund" and seen["refine"][2] == {"error": "403"}
    assert r3["step"] == 1 and seen["trace"][1] == "auto"
    assert seen["trace"][0] == {
        "task": "refund order",
        "outcome": "failure",
        "steps": [{"index": 0, "kind": "message", "tool": "refund"}],
    }
    assert r4.is_error and "exactly one of experience_id or steps" in r4.content[0].text


@pytest.mark.skipif(
    not hasattr(KnowledgeBase, "retrieve"), reason="KnowledgeBase.retrieve is not built yet"
)
def test_retrieve_gives_a_context_block(make: Any) -> None:
    async def scenario(c: Client[Any]) -> Any:
        await c.call_tool(
            "record_experience",
            {
                "task": "refund a damaged blender",
                "outcome": "success",
                "strategy": "check the return window first",
            },
        )
        return (
            await c.call_tool("retrieve", {"task": "refund a broken toaster"})
        ).structured_content

    result = call(scenario, make())
    assert "return window" in result["context"]


def test_each_call_is_logged_as_one_json_line(make: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kb.mcp")

    async def scenario(c: Client[Any]) -> None:
        await c.call_tool("search_experiences", {"query": "anything"})
        with pytest.raises(ToolError):
            await c.call_tool("get_experience", {"experience_id": "exp_missing"})
        with pytest.raises(ToolError):
            await c.call_tool("search_experiences", {"query": 3})

    call(scenario, make())
    entries = [r.data for r in caplog.records if r.name == "kb.mcp" and hasattr(r, "data")]
    assert [(e["tool"], e["outcome"]) for e in entries] == [
        ("search_experiences", "ok"),
        ("get_experience", "error"),
        ("search_experiences", "invalid"),
    ]
    for entry in entries:
        assert entry["namespace"] == "default"
        assert isinstance(entry["duration_ms"], float)
    line = (
        logging.getLogger("kb.mcp")
        .handlers[0]
        .format(next(r for r in caplog.records if hasattr(r, "data")))
    )
    assert json.loads(line)["tool"] == "search_experiences"


@pytest.mark.skipif(
    not hasattr(KnowledgeBase, "trace"), reason="KnowledgeBase.trace is not built yet"
)
def test_trace_failure_attributes_a_recorded_failure(make: Any) -> None:
    async def scenario(c: Client[Any]) -> Any:
        added = await c.call_tool(
            "record_experience",
            {
                "task": "refund order 1042",
                "outcome": "failure",
                "steps": [
                    {
                        "index": 0,
                        "agent": "planner",
                        "kind": "message",
                        "content": "refund it right away",
                    },
                    {
                        "index": 1,
                        "agent": "support",
                        "kind": "tool_call",
                        "tool": "refund",
                        "args": {"order": 1042},
                    },
                    {
                        "index": 2,
                        "agent": "support",
                        "kind": "error",
                        "tool": "refund",
                        "error": "403: order not eligible for refund",
                    },
                ],
            },
        )
        exp_id = added.structured_content["id"]
        traced = await c.call_tool(
            "trace_failure", {"experience_id": exp_id, "method": "heuristic"}
        )
        bad = await c.call_tool_mcp("trace_failure", {"experience_id": exp_id, "method": "tarot"})
        return traced.structured_content, bad

    traced, bad = call(scenario, make())
    assert traced["step"] in {0, 1, 2} and 0 <= traced["confidence"] <= 1
    assert bad.is_error and "method must be one of" in bad.content[0].text
