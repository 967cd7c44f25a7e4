"""Parity: the same operations through the CLI (--json), the SDK and MCP give the same JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
from fastmcp import Client
from typer.testing import CliRunner

from kb.cli import app
from kb.service import KnowledgeBase
from mcp_server.server import create_server

EXPERIENCES = [
    {
        "task": "refund a damaged blender for order 1042",
        "outcome": "failure",
        "domain": "retail",
        "strategy": "refunded before checking the return window",
        "tags": ["refund"],
        "steps": [
            {
                "index": 0,
                "agent": "support",
                "kind": "tool_call",
                "tool": "refund",
                "args": {"order": 1042},
                "error": "403: not eligible",
            }
        ],
    },
    {
        "task": "refund a cracked phone screen",
        "outcome": "success",
        "domain": "retail",
        "strategy": "checked the warranty, then refunded",
        "tags": ["refund"],
    },
    {"task": "book the cheapest flight from SFO to JFK", "outcome": "success", "domain": "travel"},
]
SKILL = {
    "name": "check-return-window",
    "description": "Check whether an order can still be refunded.",
    "steps": ["look up the order date", "compare with the 30-day window"],
    "status": "validated",
}


def cli_json(store: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["--store", str(store), *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_search_and_get_agree_across_cli_sdk_and_mcp(kb: KnowledgeBase) -> None:
    ids = [kb.add_experience(e).id for e in EXPERIENCES]
    kb.add_skill(SKILL)
    query = "refund a broken appliance"

    sdk = {
        "search": [
            h.model_dump(mode="json")
            for h in kb.search(query, 3, kind="experience", outcome="failure")
        ],
        "skills": [h.model_dump(mode="json") for h in kb.search_skills(query, 3)],
        "experience": kb.get_experience(ids[0]).model_dump(mode="json"),
        "skill": kb.get_skill(SKILL["name"]).model_dump(mode="json"),
    }
    cli = {
        "search": cli_json(
            kb.path, "search", query, "-k", "3", "--kind", "experience", "--outcome", "failure"
        ),
        "skills": cli_json(kb.path, "search", query, "-k", "3", "--kind", "skill"),
        "experience": cli_json(kb.path, "show", ids[0]),
        "skill": cli_json(kb.path, "show", SKILL["name"]),
    }
    server = create_server(store=kb.path, embedder=kb.embedder.inner, warm=False)

    async def through_mcp() -> dict[str, Any]:
        async with Client(server) as c:

            async def tool(name: str, args: dict[str, Any]) -> Any:
                return (await c.call_tool(name, args)).structured_content

            return {
                "search": (
                    await tool("search_experiences", {"query": query, "k": 3, "outcome": "failure"})
                )["hits"],
                "skills": (await tool("search_skills", {"query": query, "k": 3}))["hits"],
                "experience": await tool("get_experience", {"experience_id": ids[0]}),
                "skill": await tool("get_skill", {"name": SKILL["name"]}),
            }

    mcp = anyio.run(through_mcp)
    assert sdk["search"] and sdk["search"][0]["id"] == ids[0]
    assert sdk["skills"] and sdk["skills"][0]["title"] == SKILL["name"]
    for key in sdk:
        assert cli[key] == sdk[key], key
        assert mcp[key] == sdk[key], key
