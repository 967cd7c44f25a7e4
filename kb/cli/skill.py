"""``kb skill ...``: curation of the skill library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from kb.cli.common import JsonOpt, console, handle_errors, print_json, progress_bar, store

skill_app = typer.Typer(
    help="Curate skills: add, import/export SKILL.md, validate, run, mine, merge, prune.",
    no_args_is_help=True,
)

STATUS_STYLE = {
    "validated": "green",
    "approved": "cyan",
    "draft": "yellow",
    "broken": "red",
    "deprecated": "dim",
}


UnsafeOpt = Annotated[
    bool,
    typer.Option(
        "--unsafe-no-isolation",
        help="Run skill code without bubblewrap where it is missing: NO file-system, process or "
        "network boundary. An operator's explicit choice; never available over MCP.",
    ),
]


def _limits(unsafe: bool, **kwargs: Any) -> Any:
    from skills import RunLimits

    return RunLimits(unsafe_no_isolation=unsafe, **kwargs)


def _load_json(path: Path) -> Any:
    from kb.errors import Invalid

    raw = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise Invalid(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def _actions(actions: list[Any], as_json: bool, empty: str) -> None:
    if as_json:
        print_json(actions)
        return
    if not actions:
        console.print(empty)
    for action in actions:
        support = f" support={action.support}" if action.support is not None else ""
        console.print(
            f"{action.action} {action.name}{support} {action.detail}".rstrip(), highlight=False
        )


@skill_app.command("list")
@handle_errors
def list_(
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    all_versions: Annotated[bool, typer.Option("--all-versions", help="Every version.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List skills (latest versions), by name."""
    with store() as kb:
        items = kb.list_skills(status=status, all_versions=all_versions)
    if as_json:
        print_json(items)
        return
    table = Table()
    for column in ("name", "version", "status", "mode", "uses", "success rate", "description"):
        table.add_column(column, overflow="fold")
    for s in items:
        rate = f"{s.success_rate:.0%}" if s.success_rate is not None else ""
        table.add_row(
            s.name,
            str(s.version),
            f"[{STATUS_STYLE.get(s.status.value, '')}]{s.status.value}[/]",
            s.mode.value if s.mode else "",
            str(s.uses),
            rate,
            s.description[:70],
        )
    console.print(table if items else "no skills")


@skill_app.command()
@handle_errors
def show(
    name: Annotated[str, typer.Argument(help="Skill name or id.")],
    version: Annotated[int | None, typer.Option(help="A specific version.")] = None,
    md: Annotated[bool, typer.Option("--md", help="Print as SKILL.md.")] = False,
    files: Annotated[bool, typer.Option("--files", help="List the files of its package.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show one skill (latest version unless --version)."""
    with store() as kb:
        skill = kb.get_skill(name, version)
        text = kb.skill_md(name, version) if md else None
        listing = kb.skill_files(name, version) if files else None
    if listing is not None:
        if as_json:
            print_json(listing)
            return
        for f in listing:
            console.print(f"{f.mode:o} {f.size:>9} {f.mime:<28} {f.path}", highlight=False)
        return
    if as_json:
        print_json(skill)
    elif text is not None:
        sys.stdout.write(text)
    else:
        for key, value in skill.model_dump(mode="json").items():
            if value not in (None, [], {}, ""):
                shown = json.dumps(value) if isinstance(value, dict | list) else value
                console.print(f"[bold]{key}[/bold]: {shown}", highlight=False)


@skill_app.command()
@handle_errors
def add(
    file: Annotated[
        Path, typer.Argument(help="JSON file with the skill (SkillCreate fields), or -.")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Add a skill from JSON (it starts as a draft unless the file says otherwise)."""
    data = _load_json(file)
    with store() as kb:
        skill = kb.add_skill(data)
    if as_json:
        print_json(skill)
    else:
        console.print(f"added {skill.name} v{skill.version} ({skill.id}, {skill.status.value})")


@skill_app.command()
@handle_errors
def update(
    name: Annotated[str, typer.Argument(help="Skill name.")],
    file: Annotated[Path, typer.Argument(help="JSON object of the fields to change, or -.")],
    as_json: JsonOpt = False,
) -> None:
    """Make a new version of a skill; the old one stays retrievable (`kb skill history`)."""
    with store() as kb:
        skill = kb.update_skill(name, _load_json(file))
    if as_json:
        print_json(skill)
    else:
        console.print(f"{skill.name} is now v{skill.version} ({skill.status.value})")


@skill_app.command("import")
@handle_errors
def import_(
    path: Annotated[Path, typer.Argument(help="A folder tree of SKILL.md packages, or a .zip.")],
    approve: Annotated[
        bool, typer.Option("--approve", help="Approve the guided packages (you have read them).")
    ] = False,
    validate: Annotated[
        bool,
        typer.Option("--validate", help="Run the executable packages' tests; validate on pass."),
    ] = False,
    unsafe: UnsafeOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Import Agent Skills packages (SKILL.md folders). Each lands as a draft whatever status it
    declares, unless --approve or --validate; unsafe files are refused with the reason."""
    with store() as kb, progress_bar("importing skills", None, enabled=not as_json) as advance:
        report = kb.import_skills(
            path, approve=approve, validate=validate, limits=_limits(unsafe), progress=advance
        )
    if as_json:
        print_json(report)
        return
    console.print(
        f"{len(report.added)} added, {len(report.versions)} new versions, "
        f"{len(report.unchanged)} unchanged, {len(report.approved)} approved, "
        f"{len(report.validated)} validated, {len(report.skipped)} skipped"
    )
    for warning in report.warnings:
        console.print(
            f"  warning {warning['path']}: {warning['rule']}: {warning['detail']}", highlight=False
        )
    for item in report.not_validated:
        console.print(f"  left a draft {item['path']}: {item['error']}", highlight=False)
    for skipped in report.skipped:
        console.print(f"  skipped {skipped['path']}: {skipped['error']}", highlight=False)


@skill_app.command()
@handle_errors
def export(
    dest: Annotated[Path, typer.Argument(help="Folder to write the packages into.")],
    as_json: JsonOpt = False,
) -> None:
    """Export every skill as an Agent Skills package folder (SKILL.md + skill.json + scripts/)."""
    with store() as kb:
        result = kb.export_skills(dest)
    if as_json:
        print_json(result)
    else:
        console.print(f"wrote {result.skills} skills to {result.path}")


@skill_app.command()
@handle_errors
def validate(
    name: Annotated[str, typer.Argument(help="Skill name.")],
    unsafe: UnsafeOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the skill's tests in the sandbox and update its status (validated / broken)."""
    with store() as kb:
        report = kb.validate_skill(name, limits=_limits(unsafe))
    if as_json:
        print_json(report)
    else:
        for outcome in report.outcomes:
            mark = "[green]pass[/green]" if outcome["passed"] else "[red]FAIL[/red]"
            error = f" {outcome['error']}" if outcome.get("error") else ""
            console.print(
                f"{mark} {outcome['name']} ({outcome['duration']:.2f}s){error}", highlight=False
            )
        console.print(
            f"{report.name} v{report.version}: {report.previous_status} -> {report.status}"
        )
    if report.failed:
        raise typer.Exit(1)


@skill_app.command()
@handle_errors
def approve(
    name: Annotated[str, typer.Argument(help="Skill name.")], as_json: JsonOpt = False
) -> None:
    """Approve a guided skill after reading it: draft -> approved."""
    with store() as kb:
        skill = kb.approve_skill(name)
    print_json(skill) if as_json else console.print(f"{skill.name} is {skill.status.value}")


@skill_app.command()
@handle_errors
def deprecate(
    name: Annotated[str, typer.Argument(help="Skill name.")],
    reason: Annotated[str, typer.Option(help="Why.")] = "deprecated by hand",
    as_json: JsonOpt = False,
) -> None:
    """Deprecate a skill (it is kept, but no longer retrieved by default)."""
    with store() as kb:
        skill = kb.deprecate_skill(name, reason=reason)
    print_json(skill) if as_json else console.print(f"{skill.name} is {skill.status.value}")


@skill_app.command()
@handle_errors
def run(
    name: Annotated[str, typer.Argument(help="Skill name.")],
    params: Annotated[
        str, typer.Option("--params", "-p", help="Parameters as a JSON object.")
    ] = "{}",
    timeout: Annotated[float, typer.Option(help="Wall-clock limit, seconds.")] = 10.0,
    unsafe: UnsafeOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run an executable skill in the sandbox with JSON parameters."""
    from kb.errors import Invalid

    try:
        values = json.loads(params)
    except json.JSONDecodeError as exc:
        raise Invalid(f"--params is not valid JSON ({exc.msg})") from exc
    if not isinstance(values, dict):
        raise Invalid("--params must be a JSON object")
    with store() as kb:
        result = kb.run_skill(name, values, limits=_limits(unsafe, timeout=timeout))
    if as_json:
        print_json(result)
    elif result.ok:
        console.print(json.dumps(result.value, indent=2), highlight=False)
    else:
        console.print(
            f"[red]failed[/red] ({result.killed_by or result.error_type}): {result.error}",
            highlight=False,
        )
        if result.traceback:
            console.print(result.traceback, highlight=False)
    if not result.ok:
        raise typer.Exit(1)


@skill_app.command()
@handle_errors
def mine(
    min_support: Annotated[
        int, typer.Option(help="Least number of successful runs a sequence recurs in.")
    ] = 3,
    min_length: Annotated[int, typer.Option(help="Least number of tool calls in a sequence.")] = 2,
    max_length: Annotated[int, typer.Option(help="Most tool calls in a sequence.")] = 6,
    domain: Annotated[str | None, typer.Option(help="Only experiences of this domain.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show candidates, store nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Mine draft skills from recurring tool-call sequences of successful experiences."""
    with store() as kb:
        total = kb.stats().experiences_by_outcome.get("success", 0)
        with progress_bar("mining", total, enabled=not as_json) as advance:
            actions = kb.mine_skills(
                min_support=min_support,
                min_length=min_length,
                max_length=max_length,
                domain=domain,
                dry_run=dry_run,
                progress=lambda n: advance(1),
            )
    _actions(actions, as_json, "no recurring sequences found")


@skill_app.command()
@handle_errors
def merge(
    threshold: Annotated[
        float, typer.Option(help="Cosine similarity at or above which to merge.")
    ] = 0.9,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Merge near-duplicate skills (similar and same parameters), keeping the trail."""
    with store() as kb:
        actions = kb.merge_skills(threshold=threshold, dry_run=dry_run)
    _actions(actions, as_json, "no near-duplicates")


@skill_app.command()
@handle_errors
def prune(
    min_uses: Annotated[int, typer.Option(help="Judge the failure rate after this many uses.")] = 5,
    max_failure_rate: Annotated[
        float, typer.Option(help="Deprecate above this failure rate.")
    ] = 0.5,
    max_idle_days: Annotated[float, typer.Option(help="Deprecate when unused this long.")] = 90.0,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Deprecate (never delete) skills that fail too often or are not used."""
    with store() as kb:
        actions = kb.prune_skills(
            min_uses=min_uses,
            max_failure_rate=max_failure_rate,
            max_idle_days=max_idle_days,
            dry_run=dry_run,
        )
    _actions(actions, as_json, "nothing to prune")


@skill_app.command()
@handle_errors
def history(
    name: Annotated[str, typer.Argument(help="Skill name.")], as_json: JsonOpt = False
) -> None:
    """Every version of a skill with its status and validation runs."""
    with store() as kb:
        versions = kb.skill_history(name)
    if as_json:
        print_json(versions)
        return
    for v in versions:
        passed = sum(r["passed"] for r in v.validations)
        console.print(
            f"v{v.version} {v.status.value}{' (latest)' if v.latest else ''} "
            f"{v.id} created {v.created_at[:19]}; validations {passed}/{len(v.validations)} "
            f"passed; uses {v.uses}",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add ``kb skill ...`` to the app."""
    app.add_typer(skill_app, name="skill")
