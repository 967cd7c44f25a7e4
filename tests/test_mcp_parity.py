"""Parity: the same operations through the CLI (--json), the SDK and MCP give the same results,
reads (search, get) and writes (record, update, forget, feedback) alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
from fastmcp import Client
from typer.testing import CliRunner

from kb.cli import app
from kb.embeddings import SentenceTransformerEmbedder
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
VOLATILE = {"id", "created_at", "updated_at", "source", "provenance"}


def cli_json(store: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["--store", str(store), *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def mcp(store: Path, embedder: SentenceTransformerEmbedder, calls: list[tuple[str, Any]]) -> Any:
    server = create_server(store=store, embedder=embedder, warm=False)

    async def run() -> list[Any]:
        async with Client(server) as c:
            return [(await c.call_tool(name, args)).structured_content for name, args in calls]

    return anyio.run(run)


def content(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record without what differs by who wrote it and when."""
    return {k: v for k, v in record.items() if k not in VOLATILE}


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
    searched, skills, experience, skill = mcp(
        kb.path,
        kb.embedder.inner,  # type: ignore[arg-type]
        [
            ("search", {"query": query, "k": 3, "outcome": "failure", "detail": True}),
            ("search", {"query": query, "k": 3, "kind": "skill", "detail": True}),
            ("get", {"id": ids[0]}),
            ("get", {"id": SKILL["name"]}),
        ],
    )
    through_mcp = {
        "search": searched["hits"],
        "skills": skills["hits"],
        "experience": experience,
        "skill": skill,
    }
    assert sdk["search"] and sdk["search"][0]["id"] == ids[0]
    assert sdk["skills"] and sdk["skills"][0]["title"] == SKILL["name"]
    for key in sdk:
        assert cli[key] == sdk[key], key
        assert through_mcp[key] == sdk[key], key


def test_writes_agree_across_cli_sdk_and_mcp(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """record, update, forget and feedback: the same request through each shell leaves the same
    record (but for ids, times and provenance), the same versions and the same usage counts."""
    paths = {shell: tmp_path / shell for shell in ("cli", "sdk", "mcp")}
    task = {"task": "refund a damaged kettle", "outcome": "failure", "domain": "retail"}
    lessons = ["check the return window before refunding"]
    change = {"outcome": "partial", "lessons": ["refunds need a receipt"]}

    # record
    created = cli_json(
        paths["cli"],
        "add",
        "--task",
        task["task"],
        "--outcome",
        task["outcome"],
        "--domain",
        task["domain"],
        "--lesson",
        lessons[0],
    )
    ids = {"cli": created["id"]}
    with KnowledgeBase.open(paths["sdk"], embedder=embedder) as kb:
        ids["sdk"] = kb.add_experience({**task, "lessons": lessons}).id
    (added,) = mcp(paths["mcp"], embedder, [("record_experience", {**task, "lessons": lessons})])
    ids["mcp"] = added["id"]
    assert {added["action"], created.get("action", "added")} == {"added"}

    # update and feedback
    cli_json(
        paths["cli"], "update", ids["cli"], "--outcome", "partial", "--lesson", change["lessons"][0]
    )
    cli_usage = cli_json(paths["cli"], "feedback", ids["cli"], "--failure", "--note", "missed it")
    with KnowledgeBase.open(paths["sdk"], embedder=embedder) as kb:
        kb.update_experience(ids["sdk"], change)
        sdk_usage = kb.feedback(ids["sdk"], success=False, note="it missed the receipt rule")
    updated, mcp_usage = mcp(
        paths["mcp"],
        embedder,
        [
            ("update_experience", {"id": ids["mcp"], **change}),
            ("record_feedback", {"id": ids["mcp"], "success": False, "note": "missed it"}),
        ],
    )
    assert updated["version"] == 2
    assert {k: v for k, v in mcp_usage.items() if k != "id"} == {
        k: v for k, v in sdk_usage.model_dump().items() if k != "id"
    }
    assert {k: v for k, v in cli_usage.items() if k != "id"} == {
        k: v for k, v in mcp_usage.items() if k != "id"
    }

    stored = {}
    for shell in ("cli", "sdk", "mcp"):
        with KnowledgeBase.open(paths[shell], embedder=embedder) as kb:
            history = kb.experience_history(ids[shell])
            stored[shell] = [content(v.model_dump(mode="json")) for v in history]
    assert stored["cli"] == stored["sdk"] == stored["mcp"]
    assert [v["outcome"] for v in stored["mcp"]] == ["failure", "partial"]

    # forget
    cli_json(paths["cli"], "delete", ids["cli"])
    with KnowledgeBase.open(paths["sdk"], embedder=embedder) as kb:
        kb.delete_experience(ids["sdk"])
    mcp(paths["mcp"], embedder, [("forget_experience", {"id": ids["mcp"], "reason": "outdated"})])
    for shell in ("cli", "sdk", "mcp"):
        with KnowledgeBase.open(paths[shell], embedder=embedder) as kb:
            assert kb.search("refund a damaged kettle", 5) == [], shell
            assert kb.list_experiences() == [], shell
            assert kb.experience_history(ids[shell])[-1].deleted_at is not None, shell
