"""The MCP server over real transports with real clients: stdio (a `kb serve` subprocess, the mcp
SDK's ClientSession), streamable HTTP on loopback (fastmcp's Client, bearer tokens, namespace
isolation, /health, malformed and oversized bodies), the official MCP Inspector in CLI mode, and
the `kb token` commands."""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from fastmcp import Client
from fastmcp.exceptions import ToolError
from typer.testing import CliRunner

from kb.cli import app
from kb.embeddings import SentenceTransformerEmbedder
from kb.service import KnowledgeBase
from mcp_server.server import create_server, http_app

ROOT = Path(__file__).resolve().parent.parent
KB_BIN = Path(sys.executable).parent / "kb"
MCP_ACCEPT = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@contextmanager
def serving(server: Any) -> Iterator[str]:
    """The server's HTTP app on a free loopback port, in a thread; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    runner = uvicorn.Server(uvicorn.Config(http_app(server), log_level="warning"))
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not runner.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the HTTP server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        runner.should_exit = True
        thread.join(10)
        sock.close()


# -- stdio ------------------------------------------------------------------------------------------
def test_stdio_subprocess_with_the_mcp_sdk_client(tmp_path: Path) -> None:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    store = tmp_path / "store"
    errlog = tmp_path / "server.log"
    params = StdioServerParameters(
        command=str(KB_BIN), args=["--store", str(store), "serve"], cwd=str(ROOT)
    )

    async def scenario() -> tuple[set[str], Any, Any, Any]:
        with errlog.open("w") as err:
            async with (
                stdio_client(params, errlog=err) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                tools = {t.name for t in (await session.list_tools()).tools}
                added = await session.call_tool(
                    "record_experience",
                    {
                        "task": "rotate the API keys of the billing service",
                        "outcome": "success",
                        "lessons": ["announce the rotation window first"],
                    },
                )
                found = await session.call_tool("search_experiences", {"query": "key rotation"})
                missing = await session.call_tool(
                    "get_experience", {"experience_id": "exp_missing"}
                )
                return tools, added, found, missing

    tools, added, found, missing = anyio.run(scenario)
    assert {"search_experiences", "record_experience", "get_experience"} <= tools
    assert "run_skill" not in tools
    exp_id = added.structured_content["id"]
    assert found.structured_content["hits"][0]["id"] == exp_id
    assert missing.is_error and "no experience 'exp_missing'" in missing.content[0].text
    lines = [json.loads(line) for line in errlog.read_text().splitlines() if line.startswith("{")]
    calls = [(e["tool"], e["outcome"]) for e in lines if e.get("event") == "tool"]
    assert calls == [
        ("record_experience", "ok"),
        ("search_experiences", "ok"),
        ("get_experience", "error"),
    ]
    with KnowledgeBase.open(store) as kb:
        assert kb.get_experience(exp_id).provenance.source == "mcp"


# -- HTTP -------------------------------------------------------------------------------------------
@pytest.fixture
def two_tenants(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> dict[str, Any]:
    """A store with one experience in namespace B and tokens for A, B and a revoked one."""
    store = tmp_path / "store"
    with KnowledgeBase.open(store, namespace="B", embedder=embedder) as kb:
        b_id = kb.add_experience(
            {
                "task": "refund a damaged blender (tenant B only)",
                "outcome": "success",
                "strategy": "B's private refund playbook",
            }
        ).id
        token_a = kb.create_token("agent-a", "A").secret
        token_b = kb.create_token("agent-b", "B").secret
        revoked = kb.create_token("old", "A")
        kb.revoke_token(revoked.id)
    return {"store": store, "b_id": b_id, "a": token_a, "b": token_b, "revoked": revoked.secret}


def test_http_tokens_bind_each_caller_to_its_namespace(
    two_tenants: dict[str, Any],
    embedder: SentenceTransformerEmbedder,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    t = two_tenants
    server = create_server(store=t["store"], embedder=embedder, tokens=True, warm=False)
    with serving(server) as base:
        url = f"{base}/mcp"
        health = httpx2.get(f"{base}/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        for headers in (
            {},
            {"Authorization": "Bearer kbt_not-a-token"},
            {"Authorization": f"Bearer {t['revoked']}"},
            {"Authorization": t["a"]},
        ):
            refused = httpx2.post(url, json=initialize, headers={**MCP_ACCEPT, **headers})
            assert refused.status_code == 401, headers

        async def as_a() -> dict[str, Any]:
            async with Client(url, auth=t["a"]) as c:
                out: dict[str, Any] = {}
                out["search"] = (
                    await c.call_tool("search_experiences", {"query": "refund a damaged blender"})
                ).structured_content
                for name, args in (
                    ("get_experience", {"experience_id": t["b_id"]}),
                    ("record_feedback", {"item_id": t["b_id"], "success": True}),
                ):
                    with pytest.raises(ToolError, match="namespace 'A'"):
                        await c.call_tool(name, args)
                with pytest.raises(Exception, match="namespace 'A'"):
                    await c.read_resource(f"experience://{t['b_id']}")
                out["added"] = (
                    await c.call_tool(
                        "record_experience",
                        {"task": "refund a damaged blender for tenant A", "outcome": "failure"},
                    )
                ).structured_content
                return out

        async def as_b() -> Any:
            async with Client(url, auth=t["b"]) as c:
                return (
                    await c.call_tool("search_experiences", {"query": "refund a damaged blender"})
                ).structured_content

        a = anyio.run(as_a)
        b = anyio.run(as_b)

    assert a["search"] == {"hits": []}
    a_id = a["added"]["id"]
    assert [h["id"] for h in b["hits"]] == [t["b_id"]]
    with KnowledgeBase.open(t["store"], namespace="A", embedder=embedder) as kb_a:
        assert [e.id for e in kb_a.list_experiences()] == [a_id]
        assert kb_a.get_experience(a_id).namespace == "A"
    with KnowledgeBase.open(t["store"], namespace="B", embedder=embedder) as kb_b:
        assert [e.id for e in kb_b.list_experiences()] == [t["b_id"]]
        assert kb_b.get_experience(t["b_id"]).uses == 0

    entries = [r.data for r in caplog.records if r.name == "kb.mcp" and hasattr(r, "data")]
    tools = [e for e in entries if e["event"] == "tool"]
    assert {e["namespace"] for e in tools if e["tool"] == "record_experience"} == {"A"}
    assert {e["namespace"] for e in tools} == {"A", "B"}
    logged = caplog.text + "".join(capfd.readouterr())
    for secret in (t["a"], t["b"], t["revoked"]):
        assert secret not in logged


def test_http_malformed_and_oversized_bodies(
    two_tenants: dict[str, Any], embedder: SentenceTransformerEmbedder
) -> None:
    t = two_tenants
    server = create_server(store=t["store"], embedder=embedder, tokens=True, warm=False)
    auth = {"Authorization": f"Bearer {t['a']}", **MCP_ACCEPT}
    with serving(server) as base:
        url = f"{base}/mcp"
        malformed = httpx2.post(url, content=b'{"jsonrpc": "2.0", "method": ', headers=auth)
        assert malformed.status_code == 400
        assert "Parse error" in malformed.json()["error"]["message"]
        not_rpc = httpx2.post(url, json=["not", "a", "request"], headers=auth)
        assert not_rpc.status_code == 400
        huge = httpx2.post(url, content=b"x" * 3_000_000, headers=auth)
        assert huge.status_code == 413 and "limit" in huge.json()["error"]

        async def still_up() -> Any:
            async with Client(url, auth=t["a"]) as c:
                return (
                    await c.call_tool(
                        "record_experience",
                        {"task": "after the bad requests", "outcome": "success"},
                    )
                ).structured_content

        assert anyio.run(still_up)["id"].startswith("exp_")
    with KnowledgeBase.open(t["store"], namespace="A", embedder=embedder) as kb:
        assert kb.stats().experiences == 1


# -- the official MCP Inspector ---------------------------------------------------------------------
@pytest.mark.slow  # node + npx start-up (and a registry fetch on a cold npm cache): 20-60 s
def test_mcp_inspector_cli_lists_the_tools(tmp_path: Path) -> None:
    npx = shutil.which("npx")
    node = shutil.which("node")
    if not npx or not node:
        pytest.skip("the MCP Inspector needs Node.js (npx) and it is not installed")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=False
    ).stdout
    major = int(re.sub(r"[^0-9.]", "", version).split(".")[0] or 0)
    if major < 18:
        pytest.skip(f"the MCP Inspector needs Node.js 18 or newer, found {version.strip()}")
    cmd = [
        npx,
        "-y",
        "@modelcontextprotocol/inspector",
        "--cli",
        sys.executable,
        "-m",
        "mcp_server",
        "--store",
        str(tmp_path / "store"),
        "--method",
        "tools/list",
    ]
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.skip(
            "the MCP Inspector did not finish in 240 s (fetching it from the npm registry?)"
        )
    if proc.returncode != 0 and re.search(
        r"npm (ERR|error)|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNREFUSED|E404", proc.stderr
    ):
        pytest.skip(f"the MCP Inspector could not be fetched: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = json.loads(proc.stdout)
    names = {t["name"] for t in listed["tools"]}
    assert {
        "search_experiences",
        "search_skills",
        "get_experience",
        "record_experience",
        "record_feedback",
    } <= names
    for tool in listed["tools"]:
        assert "Example:" in tool["description"]


# -- kb token -------------------------------------------------------------------------------------
def test_kb_token_create_list_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    store = ["--store", str(tmp_path / "store")]
    created = runner.invoke(
        app, [*store, "token", "create", "--name", "ci", "--namespace", "A", "--json"]
    )
    assert created.exit_code == 0, created.output
    token = json.loads(created.stdout)
    assert token["secret"].startswith("kbt_") and token["namespace"] == "A"

    plain = runner.invoke(app, [*store, "-n", "B", "token", "create", "--name", "laptop"])
    assert plain.exit_code == 0
    secret_b = plain.stdout.strip()
    assert secret_b.startswith("kbt_")

    listed = runner.invoke(app, [*store, "token", "list", "--json"])
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["namespace"], r["revoked"]) for r in rows] == [
        ("ci", "A", False),
        ("laptop", "B", False),
    ]
    assert token["secret"] not in listed.stdout and "hash" not in rows[0]

    revoked = runner.invoke(app, [*store, "token", "revoke", token["id"], "--json"])
    assert revoked.exit_code == 0 and json.loads(revoked.stdout)["revoked"] is True
    again = runner.invoke(app, [*store, "token", "revoke", "tok_nope"])
    assert again.exit_code == 1
    bad = runner.invoke(app, [*store, "token", "create", "--name", "x", "--namespace", "no/slash"])
    assert bad.exit_code == 1

    with KnowledgeBase.open(tmp_path / "store") as kb:
        assert kb.resolve_token(token["secret"]) is None
        assert kb.resolve_token(secret_b) == "B"
        stored = (
            kb.store.sql.engine.connect().exec_driver_sql("SELECT hash FROM tokens").scalars().all()
        )
    assert secret_b not in stored and len(stored[0]) == 64
