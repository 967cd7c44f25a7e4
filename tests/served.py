"""Talking to a served store from tests and benchmarks: a free loopback port, its ``/health``,
and one MCP ``tools/call`` over stateless streamable HTTP with a bearer token."""

from __future__ import annotations

import json
import socket
from typing import Any


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health(base: str, *, timeout: float = 5) -> dict[str, Any] | None:
    """``{base}/health`` when the server answers 200, else None (not up, or not ready)."""
    import httpx2

    try:
        answer = httpx2.get(f"{base}/health", timeout=timeout)
    except httpx2.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def tool_call(
    base: str, token: str, tool: str, arguments: dict[str, Any], *, client: Any = None
) -> dict[str, Any]:
    """One ``tools/call`` to ``{base}/mcp``; the JSON-RPC ``result`` (check its ``isError``).
    ``client``: an ``httpx2.Client`` to reuse (default: a one-off request)."""
    import httpx2

    answer = (client or httpx2).post(
        f"{base}/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments},
        },
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
        timeout=60,
    )
    answer.raise_for_status()
    body = answer.text
    if "text/event-stream" in answer.headers.get("content-type", ""):
        body = next(line[5:] for line in body.splitlines() if line.startswith("data:")).strip()
    return dict(json.loads(body)["result"])
