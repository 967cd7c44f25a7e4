"""The ``check_action`` MCP tool: the pre-execution gate, one ``KnowledgeBase.check_action`` call.

Policies (thresholds, deny lists, role rules) are never changed over MCP: only the CLI and the SDK
change them. Registered by ``mcp_server.server`` in its ``TOOLS`` list as
``(check_action, "check_action", None)``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from mcp_server.hub import current_hub

MAX_RESULT = 200_000


def check_action(
    run_id: Annotated[
        str, Field(min_length=1, max_length=200, description="Same for a whole run.")
    ],
    tool: Annotated[str, Field(min_length=1, max_length=200, description="Tool to call.")],
    args: Annotated[dict[str, Any] | None, Field(description="Its arguments.")] = None,
    result: Annotated[
        str | None, Field(max_length=MAX_RESULT, description="The last tool output.")
    ] = None,
    task: Annotated[str | None, Field(max_length=2_000, description="Your task.")] = None,
) -> dict[str, Any]:
    """Before a tool call: allow, warn or deny it, with reasons (past runs, unseen values,
    injected instructions, drift). Example: check_action(run_id='r7', tool='pay', args={})"""
    hub = current_hub()
    action = {"tool": tool, "args": args or {}, "results": [result] if result else []}
    hub.check_size("the action", action)
    decided = hub.current().check_action(run_id, action, task=task)
    return {
        "decision": decided.decision,
        "risk": round(decided.risk, 3),
        "session_risk": round(decided.session_risk, 3),
        "reasons": [f"{r.signal}: {r.detail}" for r in decided.reasons[:5]],
        "evidence": decided.evidence[:5],
        "seq": decided.seq,
    }


__all__ = ["check_action"]
