"""``kb session ...`` and ``kb gate ...``: review gated runs, set the namespace's gate policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from kb.cli.common import JsonOpt, console, handle_errors, print_json, store

session_app = typer.Typer(help="Review gated agent runs (sessions of the pre-execution gate).")
gate_app = typer.Typer(
    help="The pre-execution gate: its policy per namespace.", no_args_is_help=True
)
policy_app = typer.Typer(
    help="Show or change the gate policy (thresholds, deny lists, role rules).",
    no_args_is_help=True,
)
gate_app.add_typer(policy_app, name="policy")

STYLE = {"allow": "green", "warn": "yellow", "deny": "red"}


@session_app.command("show")
@handle_errors
def show(
    run_id: Annotated[str, typer.Argument(help="The run id the agent checked its actions under.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a gated run: its role, task, session risk and every decision with its reasons."""
    with store() as kb:
        found = kb.session(run_id)
    if as_json:
        print_json(found)
        return
    console.print(
        f"[bold]{found.run_id}[/bold] ({found.namespace}) role={found.role or '-'} "
        f"checks={found.checks} session risk={found.session_risk:.2f} "
        f"peak action risk={found.peak_risk:.2f} expires {found.expires_at:%Y-%m-%d %H:%M}"
        + (f" recorded as {found.experience_id}" if found.experience_id else ""),
        highlight=False,
    )
    if found.task:
        console.print(f"task: {found.task}", highlight=False)
    table = Table()
    for column in ("#", "tool", "decision", "risk", "session", "reasons", "evidence"):
        table.add_column(column, overflow="fold")
    for step in found.steps:
        table.add_row(
            str(step.seq),
            step.tool,
            f"[{STYLE[step.decision]}]{step.decision}[/]",
            f"{step.risk:.2f}",
            f"{step.session_risk:.2f}",
            "; ".join(f"{r.signal}: {r.detail}" for r in step.reasons[:3]),
            " ".join(step.evidence[:3]),
        )
    console.print(table)


@session_app.command("list")
@handle_errors
def list_(
    limit: Annotated[int, typer.Option(help="How many sessions.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List live gated runs, most recently checked first."""
    with store() as kb:
        items = kb.sessions(limit=limit)
    if as_json:
        print_json(items)
        return
    table = Table()
    for column in ("run id", "role", "checks", "session risk", "peak risk", "updated", "task"):
        table.add_column(column, overflow="fold")
    for s in items:
        table.add_row(
            s.run_id,
            s.role or "",
            str(s.checks),
            f"{s.session_risk:.2f}",
            f"{s.peak_risk:.2f}",
            f"{s.updated_at:%Y-%m-%d %H:%M}",
            (s.task or "")[:60],
        )
    console.print(table if items else "no gate sessions")


@policy_app.command("show")
@handle_errors
def policy_show(as_json: JsonOpt = False) -> None:
    """Show the namespace's gate policy."""
    with store() as kb:
        policy = kb.gate_policy()
    if as_json:
        print_json(policy)
        return
    for key, value in policy.model_dump(mode="json").items():
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        console.print(f"[bold]{key}[/bold]: {shown}", highlight=False)


@policy_app.command("set")
@handle_errors
def policy_set(
    warn: Annotated[float | None, typer.Option(help="Per-action risk that warns (0-1).")] = None,
    deny: Annotated[float | None, typer.Option(help="Per-action risk that denies (0-1).")] = None,
    session_warn: Annotated[float | None, typer.Option(help="Session risk that warns.")] = None,
    session_deny: Annotated[float | None, typer.Option(help="Session risk that denies.")] = None,
    session_memory: Annotated[
        bool | None,
        typer.Option("--session-memory/--stateless", help="Use the session risk memory."),
    ] = None,
    deny_tool: Annotated[
        list[str] | None, typer.Option("--deny-tool", help="Add a tool to the deny list.")
    ] = None,
    allow_tool: Annotated[
        list[str] | None, typer.Option("--allow-tool", help="Take a tool off the deny list.")
    ] = None,
    read_only_tool: Annotated[
        list[str] | None, typer.Option("--read-only-tool", help="A tool that only reads.")
    ] = None,
    write_tool: Annotated[
        list[str] | None, typer.Option("--write-tool", help="A tool that changes something.")
    ] = None,
    role_tools: Annotated[
        list[str] | None,
        typer.Option("--role-tools", help="ROLE=tool1,tool2: the only tools a role may use."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="A JSON file of policy fields (tool_schemas, roles, ...)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change the namespace's gate policy; fields not given stay as they are."""
    from kb.errors import Invalid

    with store() as kb:
        current = kb.gate_policy()
        changes: dict[str, Any] = {}
        if file is not None:
            try:
                changes.update(json.loads(file.read_text(encoding="utf-8")))
            except json.JSONDecodeError as exc:
                raise Invalid(f"{file}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        for key, value in {
            "warn": warn,
            "deny": deny,
            "session_warn": session_warn,
            "session_deny": session_deny,
            "session_memory": session_memory,
        }.items():
            if value is not None:
                changes[key] = value
        denied = [t for t in current.deny_tools if t not in set(allow_tool or [])]
        denied += [t for t in deny_tool or [] if t not in denied]
        if deny_tool or allow_tool:
            changes["deny_tools"] = denied
        if read_only_tool:
            changes["read_only_tools"] = sorted({*current.read_only_tools, *read_only_tool})
        if write_tool:
            changes["write_tools"] = sorted({*current.write_tools, *write_tool})
        if role_tools:
            roles = {k: v.model_dump() for k, v in current.roles.items()}
            for spec in role_tools:
                role, sep, tools = spec.partition("=")
                if not sep or not role:
                    raise Invalid(f"--role-tools takes ROLE=tool1,tool2, not {spec!r}")
                roles.setdefault(role, {})["tools"] = [t for t in tools.split(",") if t]
            changes["roles"] = roles
        policy = kb.set_gate_policy(changes)
    if as_json:
        print_json(policy)
    else:
        console.print("gate policy updated", highlight=False)


@policy_app.command("reset")
@handle_errors
def policy_reset(as_json: JsonOpt = False) -> None:
    """Put the namespace's gate policy back to the defaults."""
    with store() as kb:
        policy = kb.set_gate_policy({}, replace=True)
    if as_json:
        print_json(policy)
    else:
        console.print("gate policy reset to the defaults", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``kb session ...`` and ``kb gate ...`` to the app."""
    app.add_typer(session_app, name="session")
    app.add_typer(gate_app, name="gate")
