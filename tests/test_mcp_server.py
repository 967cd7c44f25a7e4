"""The MCP server in memory: the tool list, compact budgeted answers, memory an agent maintains,
errors it can act on, honest tracing, resources, prompt, logs, readiness.

Each test opens an in-memory ``fastmcp.Client`` on a server over a real store with the real
bundled model (the session ``embedder``); token counts use that model's tokenizer.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from starlette.testclient import TestClient

from kb.embeddings import SentenceTransformerEmbedder
from kb.models import Attribution
from kb.service import KnowledgeBase
from mcp_server.server import PAGE_SIZE, TOOLS, create_server, http_app

ROOT = Path(__file__).resolve().parent.parent
TOOL_LIST_TOKENS = 3_000
EXPECTED_TOOLS = {
    "retrieve",
    "refine",
    "search",
    "get",
    "record_experience",
    "update_experience",
    "forget_experience",
    "record_feedback",
    "propose_skill",
    "trace_failure",
    "check_action",
}
ITEM_LINE = re.compile(r'^- \[(?:exp|skl)_[0-9a-f]+\] \((\w+); [^\n]*?\) (".*")$')
HIT_LINE = re.compile(
    r"^- \[((?:exp|skl)_[0-9a-f]+)\] (experience|skill) ?(\w*) \((source: [^\n]*?)\) "
    r'(".*?")(?: why: (".*"))?$'
)


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


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


# -- the tool list ---------------------------------------------------------------------------------
def walk(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, dict):
        yield schema
        for value in schema.values():
            yield from walk(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from walk(value)


@pytest.mark.parametrize("allow_run", [False, True], ids=["default", "allow-run"])
def test_tool_list_is_small_and_precise(
    make: Any, embedder: SentenceTransformerEmbedder, allow_run: bool
) -> None:
    """The whole tools/list answer (as the client receives it) stays under 3,000 tokens of the
    bundled model's tokenizer, however many tools are added later; each tool follows the rubric."""
    listed = call(lambda c: c.list_tools_mcp(), make(allow_run=allow_run))
    wire = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "result": listed.model_dump(mode="json", by_alias=True, exclude_none=True),
        },
        separators=(",", ":"),
    )
    tokens = embedder.count_tokens(wire)
    assert tokens <= TOOL_LIST_TOKENS, f"tools/list is {tokens} tokens"
    names = {t.name for t in listed.tools}
    assert names == EXPECTED_TOOLS | ({"run_skill"} if allow_run else set())
    step_fields = {"agent", "kind", "tool", "args", "content", "result", "error", "index"}
    spelled_out = []
    for tool in listed.tools:
        description = tool.description or ""
        assert f"Example: {tool.name}(" in description, tool.name
        assert 60 <= len(description) <= 330, (tool.name, len(description))
        assert "\n" not in description
        assert tool.output_schema is None, f"{tool.name} lists an output schema"
        assert tool.meta is None
        schema = tool.input_schema
        for node in walk(schema):
            assert "anyOf" not in node, f"{tool.name}: nullable anyOf in {node}"
            for name, prop in (node.get("properties") or {}).items():
                assert prop.get("description"), f"{tool.name}.{name} has no description"
                assert prop.get("type"), f"{tool.name}.{name} has no type"
        for prop in schema["properties"].values():
            items = prop.get("items") or {}
            if step_fields <= set(items.get("properties") or {}):
                spelled_out.append(tool.name)
                assert "index" not in items.get("required", [])
    assert spelled_out == ["record_experience"]  # one Step definition, referred to elsewhere


def test_run_skill_needs_allow_run(make: Any) -> None:
    assert "run_skill" not in {t.name for t in call(lambda c: c.list_tools(), make())}
    assert "run_skill" in {t.name for t in call(lambda c: c.list_tools(), make(allow_run=True))}


def test_every_tool_is_one_facade_call() -> None:
    for fn, method in TOOLS:
        assert hasattr(KnowledgeBase, method), (fn.__name__, method)


# -- compact, budgeted answers ---------------------------------------------------------------------
LONG = "very long stored text that goes on and on " * 60


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> Path:
    """A store with the example shop trajectories, long records and skills."""
    path = tmp_path_factory.mktemp("shop") / "store"
    with KnowledgeBase.open(path, embedder=embedder) as kb:
        kb.import_file(ROOT / "examples" / "data" / "shop_trajectories.json")
        for n in range(8):
            kb.add_experience(
                {
                    "task": f"refund a damaged blender, case {n}: {LONG}",
                    "outcome": "failure" if n % 2 else "success",
                    "strategy": LONG,
                    "lessons": [LONG, "check the return window before refunding"],
                    "steps": [
                        {"index": 0, "agent": "support", "kind": "tool_call", "tool": "get_order"},
                        {"index": 1, "agent": "support", "kind": "error", "error": LONG},
                    ],
                }
            )
        for n in range(6):
            kb.add_skill(
                {
                    "name": f"refund-check-{n}",
                    "description": f"Check that an order can be refunded. {LONG}",
                    "steps": ["look up the order", "compare the date with the window", LONG],
                    "status": "validated",
                }
            )
    return path


CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "retrieve": ("retrieve", {"task": "refund a broken blender for a customer"}),
    "refine": (
        "refine",
        {
            "task": "refund a broken blender",
            "trajectory": [
                {"agent": "support", "kind": "tool_call", "tool": "get_order", "args": {"id": 7}},
            ],
            "error": "403: order not eligible for refund",
        },
    ),
    "search": ("search", {"query": "refund a damaged blender", "k": 10}),
    "search-skills": ("search", {"query": "refund an order", "kind": "skill", "k": 10}),
}


@pytest.mark.parametrize("budget", [300, 800, 2_000])
@pytest.mark.parametrize("case", list(CALLS))
def test_answers_fit_their_budget_whole_items_only(
    shop: Path, embedder: SentenceTransformerEmbedder, case: str, budget: int
) -> None:
    tool, args = CALLS[case]
    server = create_server(store=shop, embedder=embedder, warm=False)
    result = call(lambda c: c.call_tool(tool, {**args, "budget_tokens": budget}), server)
    text = text_of(result)
    tokens = embedder.count_tokens(text)
    structured = embedder.count_tokens(json.dumps(result.structured_content))
    assert 0 < tokens <= budget, (case, budget, tokens)
    assert structured <= 2 * budget, (case, budget, structured)
    lines = text.splitlines()
    ids = []
    if tool == "search":
        assert lines[0].startswith("Search hits")
        for line in lines[1:]:
            if line.startswith("(") and line.endswith("budget_tokens=" + f"{budget}.)"):
                continue
            match = HIT_LINE.match(line)
            assert match, line
            ids.append(match.group(1))
            for quoted in match.groups()[4:]:
                if quoted:
                    json.loads(quoted)  # a whole, closed string
        assert [h["id"] for h in result.structured_content["hits"]] == ids
    else:
        assert lines[-1] == "End of retrieved memory."
        items = [line for line in lines if line.startswith("- [")]
        assert items, text
        for line in items:
            match = ITEM_LINE.match(line)
            assert match, line
            json.loads(match.group(2))
            ids.append(line[3 : line.index("]")])
        assert [i["id"] for i in result.structured_content["items"]] == ids
    assert len(lines) == len(set(lines)), "a line appears twice"
    if tool != "refine":  # refine may show several decision points of one run
        assert len(ids) == len(set(ids)), "an item appears twice"
    rows = result.structured_content.get("hits") or result.structured_content.get("items")
    assert all(
        set(row) <= {"id", "kind", "title", "outcome", "status", "score", "section", "duplicates"}
        for row in rows
    )


def test_detail_adds_full_records_only_when_asked(
    shop: Path, embedder: SentenceTransformerEmbedder
) -> None:
    server = create_server(store=shop, embedder=embedder, warm=False)

    async def scenario(c: Client[Any]) -> tuple[Any, Any]:
        args = {"query": "refund a damaged blender", "k": 3}
        return (
            await c.call_tool("search", args),
            await c.call_tool("search", {**args, "detail": True}),
        )

    compact, full = call(scenario, server)
    assert len(text_of(compact).splitlines()) == len(text_of(full).splitlines())
    assert all("record" not in h for h in compact.structured_content["hits"])
    assert len(full.structured_content["hits"]) == 3
    assert all(h["record"]["task"] for h in full.structured_content["hits"])


# -- memory an agent maintains ------------------------------------------------------------------
STEPS = [
    {"agent": "support", "kind": "tool_call", "tool": "get_order", "args": {"id": 1042}},
    {"agent": "support", "kind": "error", "tool": "refund", "error": "403: order not eligible"},
]


def test_record_search_get_feedback(make: Any) -> None:
    async def scenario(c: Client[Any]) -> None:
        added = await c.call_tool(
            "record_experience",
            {
                "task": "refund a damaged blender for order 1042",
                "outcome": "failure",
                "strategy": "refunded before checking the return window",
                "lessons": ["check the return window before refunding"],
                "steps": STEPS,  # no index: numbered in order
                "domain": "retail",
                "tags": ["refund"],
            },
        )
        exp_id = added.structured_content["id"]
        assert exp_id.startswith("exp_")
        await c.call_tool(
            "record_experience", {"task": "write a haiku about autumn", "outcome": "success"}
        )

        found = await c.call_tool("search", {"query": "refund broken kitchen appliance", "k": 2})
        assert found.structured_content["hits"][0]["id"] == exp_id
        line = text_of(found).splitlines()[1]
        assert line.startswith(f"- [{exp_id}] experience failure (source: mcp, ")
        assert 'why: "check the return window before refunding"' in line
        failures = await c.call_tool("search", {"query": "haiku", "outcome": "failure"})
        assert [h["id"] for h in failures.structured_content["hits"]] == [exp_id]

        full = await c.call_tool("get", {"id": exp_id})
        assert full.structured_content["steps"][1]["error"] == "403: order not eligible"
        assert [s["index"] for s in full.structured_content["steps"]] == [0, 1]
        assert full.structured_content["namespace"] == "default"

        counts = await c.call_tool(
            "record_feedback", {"id": exp_id, "success": True, "note": "saved me a refund"}
        )
        assert counts.structured_content["uses"] == 1
        refused = await c.call_tool_mcp("record_feedback", {"id": exp_id, "success": False})
        assert refused.is_error
        assert "note is required when success is false" in text_of(refused)
        failed = await c.call_tool(
            "record_feedback", {"id": exp_id, "success": False, "note": "it was outdated"}
        )
        assert (failed.structured_content["uses"], failed.structured_content["successes"]) == (
            2,
            1,
        )

    call(scenario, make())


def test_update_and_forget_an_experience(make: Any, store: Path, embedder: Any) -> None:
    async def scenario(c: Client[Any]) -> tuple[str, Any, Any, Any, Any, Any]:
        added = await c.call_tool(
            "record_experience",
            {"task": "refund order 77 for a cracked phone", "outcome": "success", "steps": STEPS},
        )
        exp_id = added.structured_content["id"]
        updated = await c.call_tool(
            "update_experience",
            {"id": exp_id, "outcome": "failure", "lessons": ["refunds need a receipt"]},
        )
        empty = await c.call_tool_mcp("update_experience", {"id": exp_id})
        before = await c.call_tool("search", {"query": "refund a cracked phone"})
        forgotten = await c.call_tool(
            "forget_experience", {"id": exp_id, "reason": "the refund rule changed"}
        )
        after = await c.call_tool("search", {"query": "refund a cracked phone"})
        gone = await c.call_tool_mcp("get", {"id": exp_id})
        return exp_id, updated, empty, (before, after), forgotten, gone

    exp_id, updated, empty, (before, after), forgotten, gone = call(scenario, make())
    assert updated.structured_content == {
        "id": exp_id,
        "version": 2,
        "changed": ["outcome", "lessons"],
    }
    assert empty.is_error and "give at least one field to change" in text_of(empty)
    assert [h["id"] for h in before.structured_content["hits"]] == [exp_id]
    assert forgotten.structured_content == {"id": exp_id, "forgotten": True}
    assert after.structured_content["hits"] == []
    assert gone.is_error
    with KnowledgeBase.open(store, embedder=embedder) as kb:
        versions = kb.experience_history(exp_id)
        assert [v.outcome.value for v in versions] == ["success", "failure"]
        assert versions[-1].lessons == ["refunds need a receipt"]
        assert versions[-1].deleted_at is not None  # a tombstone: the curator can restore it
        kb.restore_experience(exp_id)
        assert kb.get_experience(exp_id).outcome.value == "failure"


def test_skills_cannot_be_forgotten(make: Any, store: Path, embedder: Any) -> None:
    with KnowledgeBase.open(store, embedder=embedder) as kb:
        skill = kb.add_skill(
            {
                "name": "check-window",
                "description": "Check the return window.",
                "status": "validated",
            }
        )

    async def scenario(c: Client[Any]) -> Any:
        return await c.call_tool_mcp("forget_experience", {"id": skill.id, "reason": "spam"})

    refused = call(scenario, make())
    assert refused.is_error and "is not an experience" in text_of(refused)
    with KnowledgeBase.open(store, embedder=embedder) as kb:
        assert kb.get_skill("check-window").id == skill.id


def test_skills_propose_get_search_and_resources(make: Any, store: Path, embedder: Any) -> None:
    async def scenario(c: Client[Any]) -> None:
        proposed = await c.call_tool(
            "propose_skill",
            {
                "name": "csv-export",
                "description": "Export a table to a CSV file. Use when a user asks for a spreadsheet.",
                "steps": ["open the table", "choose Export > CSV"],
            },
        )
        assert proposed.structured_content["status"] == "draft"
        got = await c.call_tool("get", {"id": "csv-export"})
        assert got.structured_content["id"] == proposed.structured_content["id"]
        hidden = await c.call_tool("search", {"query": "export a spreadsheet", "kind": "skill"})
        assert hidden.structured_content["hits"] == []  # drafts are for curators

        contents = await c.read_resource("skill://csv-export")
        assert contents[0].text.startswith("---")
        assert "name: csv-export" in contents[0].text
        added = await c.call_tool(
            "record_experience", {"task": "export orders", "outcome": "success"}
        )
        exp_id = added.structured_content["id"]
        record = json.loads((await c.read_resource(f"experience://{exp_id}"))[0].text)
        assert record["id"] == exp_id and record["task"] == "export orders"

        listed = await c.list_resources()
        by_uri = {str(r.uri): r for r in listed}
        assert by_uri["skill://csv-export"].mime_type == "text/markdown"
        assert by_uri[f"experience://{exp_id}"].mime_type == "application/json"
        assert "export orders" in (by_uri[f"experience://{exp_id}"].description or "")
        templates = {t.uri_template for t in await c.list_resource_templates()}
        assert templates == {
            "skill://{name}",
            "skill://{name}/files/{path*}",
            "experience://{experience_id}",
        }

    call(scenario, make())


def test_package_files_are_resources_with_their_own_type(
    make: Any, store: Path, embedder: Any, tmp_path: Path
) -> None:
    package = tmp_path / "pkgs" / "notes-skill"
    (package / "references").mkdir(parents=True)
    (package / "assets").mkdir()
    (package / "SKILL.md").write_text(
        "---\nname: notes-skill\ndescription: Takes notes. Use when asked.\n---\n# Notes\n"
    )
    (package / "references" / "guide.md").write_text("# Guide\n\n## Not a heading of ours\n")
    (package / "assets" / "dot.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with KnowledgeBase.open(store, embedder=embedder) as kb:
        kb.import_skills(tmp_path / "pkgs")

    async def scenario(c: Client[Any]) -> tuple[Any, Any, str]:
        guide = await c.read_resource("skill://notes-skill/files/references/guide.md")
        image = await c.read_resource("skill://notes-skill/files/assets/dot.png")
        try:
            await c.read_resource("skill://notes-skill/files/references/missing.md")
        except Exception as exc:  # the MCP error the client raises
            return guide, image, str(exc)
        return guide, image, ""

    guide, image, missing = call(scenario, make())
    assert guide[0].mime_type == "text/markdown"
    assert guide[0].text == "# Guide\n\n## Not a heading of ours\n"  # the document, unchanged
    assert image[0].mime_type == "image/png"
    assert base64.b64decode(image[0].blob) == b"\x89PNG\r\n\x1a\n\x00\x00"
    assert "has no file 'references/missing.md'" in missing


def test_resources_are_listed_in_pages(make: Any, store: Path, embedder: Any) -> None:
    with KnowledgeBase.open(store, embedder=embedder) as kb:
        kb.add_experiences(
            [{"task": f"task number {n}", "outcome": "success"} for n in range(PAGE_SIZE + 5)]
        )

    async def scenario(c: Client[Any]) -> tuple[Any, Any]:
        first = await c.list_resources_mcp()
        assert first.next_cursor
        return first, await c.list_resources_mcp(cursor=first.next_cursor)

    first, second = call(scenario, make())
    assert len(first.resources) == PAGE_SIZE
    assert len(second.resources) == 5 and second.next_cursor is None


def test_run_skill_runs_the_program(
    make: Any, store: Path, embedder: SentenceTransformerEmbedder
) -> None:
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


# -- errors an agent can act on -----------------------------------------------------------------
ERRORS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("search", {"query": "refund", "k": "many"}, ["k ", "an integer", '{"k": 5}']),
    ("search", {"query": "refund", "k": 500}, ["k ", "less than or equal to 50", '{"k": 5}']),
    ("search", {"query": "refund", "colour": "red"}, ["colour", "query, kind, k"]),
    ("record_experience", {"task": "t"}, ["outcome is required", '"failure"']),
    (
        "record_experience",
        {"task": "t", "outcome": "great"},
        ["outcome", '"success", "failure"', '{"outcome": "failure"}'],
    ),
    (
        "record_experience",
        {"task": "t", "outcome": "success", "steps": [{"colour": "red"}]},
        ["steps[0].colour", "not a field of a step", "agent, kind, tool"],
    ),
    (
        "record_experience",
        {"task": "t", "outcome": "success", "lessons": "one lesson"},
        ["lessons", "a list of strings", '["check the return window first"]'],
    ),
    ("record_feedback", {"id": "exp_1", "success": "maybe"}, ["success", "true or false"]),
    ("refine", {"task": "t"}, ["trajectory is required", '"trajectory": [{']),
]


@pytest.mark.parametrize(("tool", "args", "wanted"), ERRORS)
def test_validation_errors_are_one_sentence_with_an_example(
    make: Any, tool: str, args: dict[str, Any], wanted: list[str]
) -> None:
    result = call(lambda c: c.call_tool_mcp(tool, args), make())
    assert result.is_error
    message = text_of(result)
    assert message.startswith(f"{tool}: ")
    assert message.count(". ") <= 1 and message.endswith(".") and "\n" not in message
    assert "http" not in message and "pydantic" not in message.lower()
    assert "for example" in message or "use one of" in message
    for part in wanted:
        assert part in message, (part, message)


# -- honest tracing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "steps",
    [
        [{"kind": "message", "content": "refund order 1042"}, {"content": "I cannot do that"}],
        [
            {"agent": "system", "content": "You are a support agent. Refund nothing."},
            {"agent": "user", "content": "refund order 1042"},
        ],
        [{"agent": "system", "content": "You are a support agent."}],
    ],
    ids=["two messages", "system and user", "system only"],
)
def test_trace_failure_answers_unknown_on_weak_evidence(
    make: Any, store: Path, embedder: Any, steps: list[dict[str, Any]]
) -> None:
    async def scenario(c: Client[Any]) -> tuple[Any, Any, str]:
        loose = await c.call_tool("trace_failure", {"steps": steps})
        added = await c.call_tool(
            "record_experience", {"task": "refund order 1042", "outcome": "failure", "steps": steps}
        )
        exp_id = added.structured_content["id"]
        return loose, await c.call_tool("trace_failure", {"id": exp_id}), exp_id

    loose, stored, exp_id = call(scenario, make())
    for answer in (loose.structured_content, stored.structured_content):
        assert answer["step"] is None and answer["agent"] is None
        assert answer["confidence"] <= 0.2
        assert answer["reason"].startswith("unknown:")
    with KnowledgeBase.open(store, embedder=embedder) as kb:
        assert kb.get_experience(exp_id).attribution is None  # a guess is not kept on the record


def test_trace_failure_blames_a_step_with_evidence_and_never_a_system_message(
    make: Any,
) -> None:
    steps = [
        {"agent": "system", "content": "You are a support agent. Always refund at once."},
        {"agent": "planner", "content": "refund it right away"},
        {"agent": "support", "kind": "tool_call", "tool": "refund", "args": {"order": 1042}},
        {"agent": "support", "kind": "error", "tool": "refund", "error": "403: not eligible"},
    ]

    async def scenario(c: Client[Any]) -> Any:
        added = await c.call_tool(
            "record_experience", {"task": "refund order 1042", "outcome": "failure", "steps": steps}
        )
        return await c.call_tool("trace_failure", {"id": added.structured_content["id"]})

    answer = call(scenario, make()).structured_content
    assert answer["step"] in {1, 2, 3} and 0 <= answer["confidence"] <= 1


class FakeBundle:
    def __init__(self, context: str) -> None:
        self.context, self.tokens, self.budget_tokens = context, 3, 800


def test_loop_and_trace_tools_pass_arguments_through(
    make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring of retrieve, refine and trace_failure, with stand-ins for the service methods."""
    seen: dict[str, Any] = {}

    def retrieve(self: KnowledgeBase, task: str, **kwargs: Any) -> FakeBundle:
        seen["retrieve"] = (self.namespace, task, kwargs)
        return FakeBundle("do X, avoid Y")

    def refine(
        self: KnowledgeBase, task: str, trajectory: list[dict[str, Any]], **kwargs: Any
    ) -> FakeBundle:
        seen["refine"] = (task, trajectory, kwargs)
        return FakeBundle("repair: retry with Z")

    def trace(self: KnowledgeBase, target: Any, *, store: bool = True) -> Attribution:
        seen["trace"] = (target, store)
        return Attribution(agent="support", step=1, reason="refund before check", confidence=0.8)

    for name, fn in (("retrieve", retrieve), ("refine", refine), ("trace", trace)):
        monkeypatch.setattr(KnowledgeBase, name, fn)

    async def scenario(c: Client[Any]) -> list[Any]:
        r1 = await c.call_tool(
            "retrieve", {"task": "refund order", "domain": "retail", "plan": ["look up order"]}
        )
        r2 = await c.call_tool(
            "refine", {"task": "refund order", "error": "403", "trajectory": [{"tool": "refund"}]}
        )
        steps = [
            {"agent": "support", "kind": "tool_call", "tool": "refund"},
            {"agent": "support", "kind": "error", "error": "403"},
        ]
        r3 = await c.call_tool("trace_failure", {"steps": steps})
        r4 = await c.call_tool_mcp("trace_failure", {})
        return [r1, r2, r3, r4]

    r1, r2, r3, r4 = call(scenario, make())
    assert text_of(r1) == "do X, avoid Y" and r1.structured_content["items"] == []
    assert seen["retrieve"] == (
        "default",
        "refund order",
        {"budget_tokens": 1200, "plan": ["look up order"], "domain": "retail"},
    )
    assert text_of(r2) == "repair: retry with Z"
    task, trajectory, kwargs = seen["refine"]
    assert (task, kwargs) == ("refund order", {"budget_tokens": 800, "error": "403"})
    assert [(s.index, s.tool) for s in trajectory] == [(0, "refund")]
    assert r3.structured_content["step"] == 1 and seen["trace"][1] is False
    assert seen["trace"][0]["steps"][1] == {
        "index": 1,
        "agent": "support",
        "kind": "error",
        "error": "403",
    }
    assert r4.is_error and "exactly one of id or steps" in text_of(r4)


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
        return await c.call_tool("retrieve", {"task": "refund a broken toaster"})

    result = call(scenario, make())
    assert "return window" in text_of(result)
    assert result.structured_content["context"] == text_of(result)


# -- logs and readiness -----------------------------------------------------------------------------
def test_each_call_is_logged_as_one_json_line(make: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kb.mcp")

    async def scenario(c: Client[Any]) -> None:
        await c.call_tool("search", {"query": "anything"})
        with pytest.raises(ToolError):
            await c.call_tool("get", {"id": "exp_missing"})
        with pytest.raises(ToolError):
            await c.call_tool("search", {"query": 3})
        added = await c.call_tool("record_experience", {"task": "log me", "outcome": "success"})
        await c.call_tool(
            "forget_experience", {"id": added.structured_content["id"], "reason": "a test"}
        )

    call(scenario, make())
    entries = [r.data for r in caplog.records if r.name == "kb.mcp" and hasattr(r, "data")]
    calls = [e for e in entries if e["event"] == "tool"]
    assert [(e["tool"], e["outcome"]) for e in calls] == [
        ("search", "ok"),
        ("get", "error"),
        ("search", "invalid"),
        ("record_experience", "ok"),
        ("forget_experience", "ok"),
    ]
    for entry in calls:
        assert entry["namespace"] == "default"
        assert isinstance(entry["duration_ms"], float)
    assert calls[3]["item"].startswith("exp_") and calls[3]["outcome"] == "ok"
    assert calls[4]["item"] == calls[3]["item"] and calls[4]["reason"] == "a test"
    line = (
        logging.getLogger("kb.mcp")
        .handlers[0]
        .format(next(r for r in caplog.records if hasattr(r, "data")))
    )
    assert json.loads(line)["tool"] == "search"


def test_an_unexpected_failure_is_logged_with_where_it_was_raised(
    make: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug inside a tool (here: one the test plants in the facade) is answered with a generic
    error, and logged with its type and the line that raised it, never its message."""
    caplog.set_level(logging.INFO, logger="kb.mcp")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail from a record")

    monkeypatch.setattr(KnowledgeBase, "search", broken)

    async def scenario(c: Client[Any]) -> None:
        with pytest.raises(ToolError):
            await c.call_tool("search", {"query": "anything"})

    call(scenario, make())
    [entry] = [r.data for r in caplog.records if r.name == "kb.mcp" and hasattr(r, "data")]
    assert entry["outcome"] == "failed"
    assert entry["error"].startswith("RuntimeError at test_mcp_server.py:")
    assert entry["error"].endswith(" in broken") and "secret" not in json.dumps(entry)


class SlowModel:
    """An embedder whose load waits for a signal, to see the server before and after."""

    name = "slow-test"
    dim = 8

    def __init__(self) -> None:
        self.release = threading.Event()
        self.loaded = False

    def encode(self, texts: Any) -> np.ndarray:
        self.release.wait(30)
        self.loaded = True
        return np.ones((len(texts), self.dim), dtype=np.float32) / np.sqrt(self.dim)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def test_health_is_ready_only_once_the_model_is_loaded(store: Path) -> None:
    model = SlowModel()
    server = create_server(store=store, embedder=model, warm=True)
    with TestClient(http_app(server)) as client:
        starting = client.get("/health")
        assert starting.status_code == 503 and starting.json()["status"] == "starting"
        model.release.set()
        deadline = time.monotonic() + 30
        while (ready := client.get("/health")).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert ready.json()["status"] == "ready" and model.loaded
        index = ready.json()["index"]  # how far this server's index is behind the database
        assert (index["behind"], index["built"], index["error"]) == (0, True, None)


def test_stdio_serving_waits_for_the_model_before_the_first_request(store: Path) -> None:
    """The warm-up starts when the server is built; over stdio the first request is held until
    it is done, so no tool call pays for the model load."""
    model = SlowModel()
    server = create_server(store=store, embedder=model, warm=True, wait_ready=True)

    async def scenario() -> float:
        async def release() -> None:
            await anyio.sleep(0.5)
            model.release.set()

        async with anyio.create_task_group() as group:
            group.start_soon(release)
            async with Client(server) as c:
                assert model.loaded  # the lifespan waited for the warm-up
                start = time.perf_counter()
                await c.call_tool("record_experience", {"task": "first", "outcome": "success"})
                return time.perf_counter() - start

    assert anyio.run(scenario) < 5


def test_refine_and_trace_take_raw_messages_of_other_formats(make: Any) -> None:
    """Every importable format is accepted where a trajectory is: Anthropic content blocks here."""
    messages = [
        {"role": "user", "content": "Refund order 1042, the kettle leaks."},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking it up."},
                {"type": "tool_use", "id": "t1", "name": "get_order", "input": {"id": "1042"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": "order not found",
                    "is_error": True,
                }
            ],
        },
    ]

    async def scenario(c: Client[Any]) -> Any:
        refined = await c.call_tool("refine", {"task": "refund order 1042", "trajectory": messages})
        traced = await c.call_tool("trace_failure", {"steps": messages})
        return refined, traced.structured_content

    refined, traced = call(scenario, make())
    assert "refund order 1042" in refined.content[0].text.lower()
    assert traced["method"]


def test_near_duplicates_folded_into_a_hit_are_named_in_it(make: Any) -> None:
    """Search folds near-duplicate runs into the best of them; the compact MCP answer names the
    folded ids, so an agent can still reach each of them."""
    server = make()
    tasks = [f"titrate sample {n} for the team lab" for n in range(4)]

    async def scenario(client: Client[Any]) -> Any:
        for task in tasks:
            await client.call_tool("record_experience", {"task": task, "outcome": "success"})
        return await client.call_tool("search", {"query": "titrate a sample", "k": 10})

    hits = call(scenario, server).structured_content["hits"]
    reachable = [i for h in hits for i in [h["id"], *h.get("duplicates", [])]]
    assert len(reachable) == len(set(reachable)) == 4
    assert any(h.get("duplicates") for h in hits), hits
