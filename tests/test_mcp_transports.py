"""The MCP server over real transports with real clients: stdio (a `kb serve` subprocess, the mcp
SDK's ClientSession), streamable HTTP on loopback (fastmcp's Client, bearer tokens, namespace
isolation, /health, malformed, oversized and chunked bodies, rate limits), the official MCP
Inspector in CLI mode calling every tool, and the `kb token` commands."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
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
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
INSPECTOR_VERSION = "0.15.0"
"""The newest MCP Inspector that runs on Node 18-20 (later ones need Node 22); the test command
installs it into the virtual environment (``make inspector``)."""

Serving = Callable[[Any], AbstractContextManager[str]]


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


# -- stdio ------------------------------------------------------------------------------------------
@pytest.mark.slow  # a kb serve subprocess loading the real model
def test_stdio_subprocess_with_the_mcp_sdk_client(tmp_path: Path) -> None:
    """`kb serve` over stdio: tools work, errors are clear, each call is logged, and the model is
    loaded before the first request is answered, so the first record does not pay for it."""
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
                found = await session.call_tool("search", {"query": "key rotation"})
                missing = await session.call_tool("get", {"id": "exp_missing"})
                return tools, added, found, missing

    tools, added, found, missing = anyio.run(scenario)
    assert {"search", "record_experience", "get", "update_experience"} <= tools
    assert "run_skill" not in tools
    exp_id = added.structured_content["id"]
    assert found.structured_content["hits"][0]["id"] == exp_id
    assert missing.is_error and "no experience 'exp_missing'" in missing.content[0].text
    lines = log_lines(errlog)
    events = [e["event"] for e in lines if e.get("event") in {"warmup", "tool"}]
    assert events[0] == "warmup" and events.count("warmup") == 1, events
    calls = [(e["tool"], e["outcome"]) for e in lines if e.get("event") == "tool"]
    assert calls == [("record_experience", "ok"), ("search", "ok"), ("get", "error")]
    first = next(e for e in lines if e.get("tool") == "record_experience")
    assert first["duration_ms"] < 5_000, first  # the model load took place before it
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
    serve_http: Serving,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    t = two_tenants
    server = create_server(store=t["store"], embedder=embedder, tokens=True, warm=False)
    with serve_http(http_app(server)) as base:
        url = f"{base}/mcp"
        health = httpx2.get(f"{base}/health")
        assert health.status_code == 200 and health.json()["status"] == "ready"

        async def as_a() -> dict[str, Any]:
            async with Client(url, auth=t["a"]) as c:
                out: dict[str, Any] = {}
                out["search"] = (
                    await c.call_tool("search", {"query": "refund a damaged blender"})
                ).structured_content
                with pytest.raises(ToolError, match="namespace 'A'"):
                    await c.call_tool("get", {"id": t["b_id"]})
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
                    await c.call_tool("search", {"query": "refund a damaged blender"})
                ).structured_content

        a = anyio.run(as_a)
        b = anyio.run(as_b)

    assert a["search"]["hits"] == []
    a_id = a["added"]["id"]
    assert [h["id"] for h in b["hits"]] == [t["b_id"]]
    with KnowledgeBase.open(t["store"], namespace="A", embedder=embedder) as kb_a:
        assert [e.id for e in kb_a.list_experiences()] == [a_id]
    entries = [r.data for r in caplog.records if r.name == "kb.mcp" and hasattr(r, "data")]
    tools = [e for e in entries if e["event"] == "tool"]
    assert {e["namespace"] for e in tools if e["tool"] == "record_experience"} == {"A"}
    assert {e["namespace"] for e in tools} == {"A", "B"}
    logged = caplog.text + "".join(capfd.readouterr())
    for secret in (t["a"], t["b"], t["revoked"]):
        assert secret not in logged


def test_http_401_answers_speak_of_static_tokens(
    two_tenants: dict[str, Any], embedder: SentenceTransformerEmbedder, serve_http: Serving
) -> None:
    t = two_tenants
    server = create_server(store=t["store"], embedder=embedder, tokens=True, warm=False)
    with serve_http(http_app(server)) as base:
        url = f"{base}/mcp"
        answers = {}
        for name, headers in (
            ("missing", {}),
            ("wrong", {"Authorization": "Bearer kbt_not-a-token"}),
            ("revoked", {"Authorization": f"Bearer {t['revoked']}"}),
            ("no scheme", {"Authorization": t["a"]}),
        ):
            answers[name] = httpx2.post(url, json=INITIALIZE, headers={**MCP_ACCEPT, **headers})

        async def wrong_token() -> str:
            try:
                async with Client(url, auth="kbt_not-a-token") as c:
                    await c.list_tools()
            except Exception as exc:  # the client raises on a refused connection
                return f"{type(exc).__name__}: {exc}"
            return ""

        client_error = anyio.run(wrong_token)
    for name, answer in answers.items():
        assert answer.status_code == 401, name
        message = answer.json()["error"]["message"]
        assert "kb token create" in message, name
        assert "re-register" not in message and "OAuth" not in message
    assert "unknown or revoked" in answers["revoked"].json()["error"]["message"]
    assert "send 'Authorization: Bearer <token>'" in answers["missing"].json()["error"]["message"]
    assert "re-register" not in client_error


def test_http_malformed_oversized_and_chunked_bodies(
    two_tenants: dict[str, Any], embedder: SentenceTransformerEmbedder, serve_http: Serving
) -> None:
    t = two_tenants
    server = create_server(store=t["store"], embedder=embedder, tokens=True, warm=False)
    auth = {"Authorization": f"Bearer {t['a']}", **MCP_ACCEPT}

    def chunks(total: int) -> Iterator[bytes]:
        for _ in range(total // 65_536):
            yield b"x" * 65_536

    with serve_http(http_app(server, max_body_bytes=1_000_000)) as base:
        url = f"{base}/mcp"
        malformed = httpx2.post(url, content=b'{"jsonrpc": "2.0", "method": ', headers=auth)
        assert malformed.status_code == 400
        assert "Parse error" in malformed.json()["error"]["message"]
        not_rpc = httpx2.post(url, json=["not", "a", "request"], headers=auth)
        assert not_rpc.status_code == 400
        sized = httpx2.post(url, content=b"x" * 3_000_000, headers=auth)
        chunked = httpx2.post(url, content=chunks(3_000_000), headers=auth)
        assert "content-length" not in {k.lower() for k in chunked.request.headers}
        for answer in (sized, chunked):
            assert answer.status_code == 413
            message = answer.json()["error"]["message"]
            assert "this server takes at most 1000000" in message
            assert "Traceback" not in answer.text

        async def through_the_client() -> tuple[str, Any]:
            async with Client(url, auth=t["a"]) as c:
                too_big = await c.call_tool_mcp(
                    "record_experience",
                    {"task": "huge", "outcome": "success", "strategy": "y" * 1_500_000},
                )
                text = "".join(getattr(b, "text", "") for b in too_big.content)
                still_up = await c.call_tool(
                    "record_experience", {"task": "after the bad requests", "outcome": "success"}
                )
                return text, still_up.structured_content

        try:
            refused, added = anyio.run(through_the_client)
        except Exception as exc:  # an MCP error raised by the client
            refused, added = str(exc), None
        assert "this server takes at most 1000000" in refused
    assert added is None or added["id"].startswith("exp_")


def test_http_rate_limit_per_token(
    two_tenants: dict[str, Any], embedder: SentenceTransformerEmbedder, serve_http: Serving
) -> None:
    t = two_tenants
    server = create_server(store=t["store"], embedder=embedder, tokens=True, warm=False)
    with serve_http(http_app(server, rate_limit=6, rate_burst=3)) as base:
        url = f"{base}/mcp"

        def post(token: str) -> httpx2.Response:
            headers = {**MCP_ACCEPT, "Authorization": f"Bearer {token}"}
            return httpx2.post(url, json=INITIALIZE, headers=headers)

        burst = [post(t["a"]) for _ in range(3)]
        limited = post(t["a"])
        other = post(t["b"])
        health = [httpx2.get(f"{base}/health") for _ in range(5)]
    assert all(r.status_code == 200 for r in burst)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 10
    assert "rate limit: at most 6 requests a minute" in limited.json()["error"]["message"]
    assert other.status_code == 200  # another token has its own bucket
    assert all(r.status_code == 200 for r in health)


def test_http_checks_host_and_origin(
    two_tenants: dict[str, Any], embedder: SentenceTransformerEmbedder, serve_http: Serving
) -> None:
    """DNS rebinding: a page on another site cannot drive a server bound to loopback."""
    t = two_tenants
    server = create_server(store=t["store"], embedder=embedder, tokens=True, warm=False)
    auth = {"Authorization": f"Bearer {t['a']}", **MCP_ACCEPT}
    with serve_http(http_app(server)) as base:
        url = f"{base}/mcp"
        host = httpx2.post(url, json=INITIALIZE, headers={**auth, "Host": "evil.example"})
        origin = httpx2.post(
            url, json=INITIALIZE, headers={**auth, "Origin": "http://evil.example"}
        )
        good = httpx2.post(url, json=INITIALIZE, headers=auth)
    assert host.status_code == 421
    assert origin.status_code == 403
    assert good.status_code == 200


# -- the official MCP Inspector ---------------------------------------------------------------------
def inspector() -> list[str]:
    """The Inspector CLI: the copy `make inspector` installed, else npx (which may fetch it)."""
    installed = Path(sys.executable).parent.parent / "inspector/node_modules/.bin/mcp-inspector"
    if installed.exists():
        return [str(installed), "--cli"]
    npx = shutil.which("npx")
    if not npx or not shutil.which("node"):
        pytest.skip("the MCP Inspector needs Node.js and npm; `make inspector` installs it")
    return [npx, "-y", f"@modelcontextprotocol/inspector@{INSPECTOR_VERSION}", "--cli"]


def run_inspector(target: list[str], *args: str) -> Any:
    proc = subprocess.run(
        [*inspector(), *target, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
    return json.loads(proc.stdout)


def arg(name: str, value: Any) -> list[str]:
    return ["--tool-arg", f"{name}={value if isinstance(value, str) else json.dumps(value)}"]


@pytest.mark.slow  # node start-up for each call, a stdio server with its own model: ~1-2 min
def test_mcp_inspector_cli_calls_every_tool(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, serve_http: Serving
) -> None:
    """Every tool through the official Inspector, list and object arguments included (the
    Inspector passes a JSON value when the schema says array or object)."""
    store = tmp_path / "store"
    with KnowledgeBase.open(store, embedder=embedder) as kb:
        kb.add_skill(
            {
                "name": "add-numbers",
                "description": "Add two numbers.",
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                },
                "program": "def run(a, b):\n    return a + b\n",
                "status": "validated",
            }
        )
    listed = run_inspector(
        [sys.executable, "-m", "mcp_server", "--store", str(store)], "--method", "tools/list"
    )
    assert "record_experience" in {tool["name"] for tool in listed["tools"]}

    server = create_server(store=store, embedder=embedder, warm=False, allow_run=True)
    steps = [
        {"agent": "support", "kind": "tool_call", "tool": "refund", "args": {"order": 7}},
        {"agent": "support", "kind": "error", "tool": "refund", "error": "403: not eligible"},
    ]
    with serve_http(http_app(server, rate_limit=0)) as base:  # ~5 requests per Inspector run
        target = [f"{base}/mcp"]

        def tool(tool_name: str, args: dict[str, Any]) -> Any:
            flags = [flag for key, value in args.items() for flag in arg(key, value)]
            result = run_inspector(
                target, "--method", "tools/call", "--tool-name", tool_name, *flags
            )
            assert result.get("isError") is not True, (tool_name, result)
            return result.get("structuredContent")

        names = {t["name"] for t in run_inspector(target, "--method", "tools/list")["tools"]}
        added = tool(
            "record_experience",
            {
                "task": "refund order 7",
                "outcome": "failure",
                "steps": steps,
                "lessons": ["check the return window", "ask for a receipt"],
                "tags": ["refund"],
            },
        )
        exp_id = added["id"]
        called = {"record_experience"}
        calls: list[tuple[str, dict[str, Any]]] = [
            ("retrieve", {"task": "refund order 8", "plan": ["get_order", "refund"]}),
            ("refine", {"task": "refund order 8", "trajectory": steps, "error": "403"}),
            ("search", {"query": "refund", "k": 3}),
            ("get", {"id": exp_id}),
            ("update_experience", {"id": exp_id, "lessons": ["refunds need a receipt"]}),
            ("record_feedback", {"id": exp_id, "success": False, "note": "outdated"}),
            ("trace_failure", {"id": exp_id}),
            ("propose_skill", {"name": "refund-check", "description": "Check.", "steps": ["a"]}),
            ("run_skill", {"name": "add-numbers", "params": {"a": 2, "b": 3}}),
            ("check_action", {"run_id": "r8", "tool": "refund", "task": "refund order 8"}),
            ("forget_experience", {"id": exp_id, "reason": "a test"}),
        ]
        results = {}
        for name, args in calls:
            results[name] = tool(name, args)
            called.add(name)
        resources = run_inspector(target, "--method", "resources/list")
    assert called == names
    assert results["update_experience"]["version"] == 2
    assert results["check_action"]["decision"] in {"allow", "warn", "deny"}
    assert results["run_skill"]["value"] == 5
    assert results["forget_experience"] == {"id": exp_id, "forgotten": True}
    assert "skill://add-numbers" in {r["uri"] for r in resources["resources"]}


# -- kb token -------------------------------------------------------------------------------------
@pytest.mark.engines
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


def test_http_server_serves_the_viewer_to_a_signed_in_browser(
    two_tenants: dict[str, Any], embedder: SentenceTransformerEmbedder, serve_http: Serving
) -> None:
    t = two_tenants
    server = create_server(store=t["store"], embedder=embedder, tokens=True, warm=False)
    with serve_http(http_app(server)) as base:
        client = httpx2.Client(base_url=base, follow_redirects=False)
        assert client.get("/view").status_code == 303  # to the sign-in form
        signed = client.post("/view/login", data={"token": t["b"], "next": "/view"})
        assert signed.status_code == 303 and "HttpOnly" in signed.headers["set-cookie"]
        listing = client.get("/view?outcome=all")
        assert listing.status_code == 200 and t["b_id"] in listing.text
        page = client.get(f"/view/{t['b_id']}")
        assert page.status_code == 200 and "tenant B only" in page.text
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        assert client.post("/mcp", json=call).status_code == 401  # a cookie is no MCP credential
