"""The ``check_action`` MCP tool: the pre-execution gate, one ``KnowledgeBase.check_action`` call.

Policies (thresholds, deny lists, role rules) are never changed over MCP: only the CLI and the SDK
change them. Registered by ``mcp_server.server`` in its ``TOOLS`` list as
``(check_action, "check_action", None)``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from mcp_server.hub import current_hub

MAX_RESULTS = 20


def check_action(
    run_id: Annotated[
        str, Field(min_length=1, max_length=200, description="Your run's id (as in record_experience).")
    ],
    tool: Annotated[str, Field(min_length=1, max_length=200, description="The tool you will call.")],
    args: Annotated[dict[str, Any] | None, Field(description="Its arguments.")] = None,
    results: Annotated[
        list[str] | None,
        Field(max_length=MAX_RESULTS, description="Tool results you got since your last check."),
    ] = None,
    task: Annotated[
        str | None, Field(max_length=2_000, description="The user's task (first check).")
    ] = None,
    role: Annotated[str | None, Field(max_length=200, description="Your role or domain.")] = None,
) -> dict[str, Any]:
    """Before each tool call: allow, warn or deny, with reasons and evidence ids. Checks the
    call against your role's past successful runs, values that appear nowhere in the run,
    instructions hidden in tool results, and the drift of the whole run. On deny, do not make
    the call. Fast (no search). Example: check_action(run_id='run-7', tool='send_money',
    args={'to': 'US13...'}, results=['<last tool output>'], task='pay my bill')"""
    hub = current_hub()
    action = {"tool": tool, "args": args or {}, "results": results or []}
    hub.check_size("the action", action)
    decided = hub.current().check_action(run_id, action, role=role, task=task)
    return {
        "decision": decided.decision,
        "risk": round(decided.risk, 3),
        "session_risk": round(decided.session_risk, 3),
        "reasons": [f"{r.signal}: {r.detail}" for r in decided.reasons[:5]],
        "evidence": decided.evidence[:5],
        "seq": decided.seq,
    }


__all__ = ["check_action"]
