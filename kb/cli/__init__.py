"""The ``kb`` command line: a thin shell over :class:`kb.KnowledgeBase`.

Every command parses its arguments, makes one call on the facade and renders the result (a rich
table for people, ``--json`` for machines). Heavy imports happen inside commands so that
``kb --help`` stays fast and commands that need no embedding never import torch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from kb.cli.common import (
    JsonOpt,
    console,
    handle_errors,
    print_json,
    progress_bar,
    state,
    store,
)

app = typer.Typer(
    name="kb",
    help="Experience memory and skill library for LLM agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _options(
    store_path: Annotated[
        Path | None, typer.Option("--store", envvar="KB_STORE", help="Store directory.")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", envvar="KB_NAMESPACE", help="Namespace.")
    ] = None,
) -> None:
    """Experience memory and skill library for LLM agents.

    The store is --store, else KB_STORE, else the user data directory.
    """
    state.store = store_path
    state.namespace = namespace


def _outcome_style(outcome: str | None) -> str:
    return {"success": "green", "failure": "red", "partial": "yellow"}.get(outcome or "", "dim")


@app.command()
@handle_errors
def init(as_json: JsonOpt = False) -> None:
    """Create the store (or check that it opens) and print where it is."""
    with store() as kb:
        result = {"path": str(kb.path), "namespace": kb.namespace}
    if as_json:
        print_json(result)
    else:
        console.print(
            f"store ready at [bold]{result['path']}[/bold] (namespace {result['namespace']})"
        )


@app.command()
@handle_errors
def add(
    file: Annotated[
        Path | None, typer.Argument(help="JSON file with one experience, or - for stdin.")
    ] = None,
    task: Annotated[str | None, typer.Option(help="What the agent was asked to do.")] = None,
    outcome: Annotated[str, typer.Option(help="success | failure | partial | unknown")] = "unknown",
    strategy: Annotated[str | None, typer.Option(help="The plan or lesson, in prose.")] = None,
    domain: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag (repeatable).")] = None,
    lesson: Annotated[list[str] | None, typer.Option(help="A lesson (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record one experience, from a JSON file or from options."""
    from kb.errors import Invalid

    if file is not None:
        raw = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        try:
            data: dict[str, Any] = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise Invalid(f"{file}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    elif task:
        data = {
            "task": task,
            "outcome": outcome,
            "strategy": strategy,
            "domain": domain,
            "tags": tag or [],
            "lessons": lesson or [],
            "provenance": {"source": "cli"},
        }
    else:
        raise Invalid("give a JSON file (or -) or --task")
    with store() as kb:
        result = kb.add_experience(data)
    if as_json:
        print_json(result)
    else:
        console.print(f"{result.action} {result.id}")


@app.command("import")
@handle_errors
def import_(
    paths: Annotated[list[Path], typer.Argument(help="Files to import (JSON or JSONL).")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="auto | native | openai | multiagent | kb")
    ] = "auto",
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Import the valid records of a file with bad ones."),
    ] = False,
    domain: Annotated[
        str | None, typer.Option(help="Domain to set on imported experiences.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import experiences: native JSON/JSONL, OpenAI chat trajectories (tau-bench too),
    multi-agent logs, the store's own lossless export, or failure label files."""
    reports = []
    with store() as kb:
        for path in paths:
            # no total: counting the records first would read (and parse) the file twice
            with progress_bar(f"importing {path.name}", None, enabled=not as_json) as advance:
                reports.append(
                    kb.import_file(
                        path, format, skip_invalid=skip_invalid, domain=domain, progress=advance
                    )
                )
    if as_json:
        print_json(reports if len(reports) > 1 else reports[0])
        return
    for report in reports:
        data = report if isinstance(report, dict) else report.model_dump()
        added = (
            len(data.get("added", [])) if isinstance(data.get("added"), list) else data.get("added")
        )
        console.print(
            f"{data['path']}: {added} added, {len(data.get('skipped', []))} skipped "
            f"({data.get('format')})"
        )
        for skipped in data.get("skipped", [])[:20]:
            console.print(
                f"  skipped record {skipped.get('record')}: {skipped.get('error')}", highlight=False
            )


@app.command()
@handle_errors
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("--k", "-k", help="How many hits.")] = 10,
    kind: Annotated[str | None, typer.Option(help="experience | skill")] = None,
    mode: Annotated[str, typer.Option(help="hybrid | vector | lexical")] = "hybrid",
    outcome: Annotated[
        str | None, typer.Option(help="success | failure | partial | unknown")
    ] = None,
    domain: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Any of these tags (repeatable).")] = None,
    include_drafts: Annotated[
        bool, typer.Option("--include-drafts", help="Also draft skills.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Hybrid search over experiences and skills; shows why each hit came back."""
    from kb.retrieval import check_mode

    with store() as kb:
        hits = kb.search(
            query,
            k,
            kind=kind,
            mode=check_mode(mode),
            outcome=outcome,
            domain=domain,
            tags=tag,
            include_drafts=include_drafts,
        )
    if as_json:
        print_json(hits)
        return
    table = Table(show_lines=False)
    for column in ("#", "id", "kind", "outcome/status", "score", "title", "signals (rank)"):
        table.add_column(column, overflow="fold")
    for rank, hit in enumerate(hits, start=1):
        label = hit.outcome.value if hit.outcome else (hit.status.value if hit.status else "")
        signals = " ".join(f"{name}:{s.rank}" for name, s in hit.signals.items())
        title = hit.title[:80]
        if hit.attribution and hit.attribution.step is not None:
            title += (
                f"\n[red]caused at step {hit.attribution.step}: {hit.attribution.reason[:80]}[/red]"
            )
        table.add_row(
            str(rank),
            hit.id,
            hit.kind.value,
            f"[{_outcome_style(label)}]{label}[/]",
            f"{hit.score:.4f}",
            title,
            signals,
        )
    console.print(table if hits else "no hits")


@app.command()
@handle_errors
def show(
    item: Annotated[str, typer.Argument(help="An experience id, a skill id or a skill name.")],
    version: Annotated[int | None, typer.Option(help="Skill version.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one experience or skill in full."""
    from kb.models import kind_of

    with store() as kb:
        record = (
            kb.get_experience(item)
            if kind_of(item) == "experience"
            else kb.get_skill(item, version)
        )
    if as_json:
        print_json(record)
        return
    data = record.model_dump(mode="json")
    steps = data.pop("steps", None) if kind_of(item) == "experience" else None
    for key, value in data.items():
        if value not in (None, [], {}, ""):
            console.print(
                f"[bold]{key}[/bold]: {value if not isinstance(value, dict | list) else json.dumps(value)}",
                highlight=False,
            )
    if steps:
        table = Table(title="steps")
        for column in ("#", "agent", "kind", "tool", "content / result"):
            table.add_column(column, overflow="fold")
        for step in steps:
            text = step.get("error") or step.get("content") or step.get("result") or ""
            if step.get("args"):
                text = json.dumps(step["args"]) + ("\n" + text if text else "")
            table.add_row(
                str(step["index"]),
                step.get("agent") or "",
                step.get("kind") or "",
                step.get("tool") or "",
                text[:300],
            )
        console.print(table)


@app.command("list")
@handle_errors
def list_(
    outcome: Annotated[str | None, typer.Option()] = None,
    domain: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 50,
    offset: Annotated[int, typer.Option()] = 0,
    as_json: JsonOpt = False,
) -> None:
    """List experiences, newest first."""
    with store() as kb:
        items = kb.list_experiences(
            outcome=outcome, domain=domain, tag=tag, limit=limit, offset=offset
        )
    if as_json:
        print_json(items)
        return
    table = Table()
    for column in ("id", "outcome", "domain", "steps", "task"):
        table.add_column(column, overflow="fold")
    for exp in items:
        table.add_row(
            exp.id,
            f"[{_outcome_style(exp.outcome.value)}]{exp.outcome.value}[/]",
            exp.domain or "",
            str(len(exp.steps)),
            exp.task[:90],
        )
    console.print(table if items else "no experiences")


@app.command()
@handle_errors
def stats(as_json: JsonOpt = False) -> None:
    """Counts and index state of the store's namespace."""
    with store() as kb:
        result = kb.stats()
    if as_json:
        print_json(result)
        return
    for key, value in result.model_dump().items():
        console.print(f"[bold]{key}[/bold]: {value}", highlight=False)


@app.command()
@handle_errors
def export(
    path: Annotated[Path, typer.Argument(help="Output file (or folder for --format skills).")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="jsonl (lossless) | pairs | skills")
    ] = "jsonl",
    as_json: JsonOpt = False,
) -> None:
    """Export the namespace (lossless JSONL by default)."""
    with store() as kb:
        result = kb.export(path, format=format)
    if as_json:
        print_json(result)
    else:
        console.print(
            ", ".join(f"{k}: {v}" for k, v in result.model_dump().items() if v or k == "path"),
            highlight=False,
        )


@app.command()
@handle_errors
def reindex(as_json: JsonOpt = False) -> None:
    """Rebuild the vector and full-text index from SQL with the configured model."""
    with store() as kb:
        stats = kb.stats()
        total = stats.experiences + stats.skills
        with progress_bar("re-embedding", total, enabled=not as_json) as advance:
            count = kb.reindex(progress=advance)
    if as_json:
        print_json({"reindexed": count})
    else:
        console.print(f"reindexed {count} records")


@app.command()
@handle_errors
def doctor(as_json: JsonOpt = False) -> None:
    """Check the model, the index against SQL, and versions. Exits 1 when a check fails."""
    with store() as kb:
        report = kb.doctor()
    if as_json:
        print_json(report)
    else:
        for check in report.checks:
            mark = "[green]ok[/green]" if check.ok else "[red]FAIL[/red]"
            console.print(f"{mark} {check.name}: {check.detail}", highlight=False)
        console.print(
            "versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()),
            highlight=False,
        )
    if not report.ok:
        raise typer.Exit(1)


from kb.cli import serve as _serve  # noqa: E402
from kb.cli import skill as _skill  # noqa: E402
from kb.cli import trace as _trace  # noqa: E402

for _module in (_skill, _trace, _serve):
    _module.register(app)


def main() -> None:
    """Console entry point."""
    app()
