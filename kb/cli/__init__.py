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
    fail,
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
        str,
        typer.Option(
            "--format",
            "-f",
            help="auto, or one of the formats in docs/FORMATS.md (native, openai, anthropic, "
            "openai-responses, otel, langsmith, swe-agent, openhands, smolagents, multiagent, "
            "kb, labels)",
        ),
    ] = "auto",
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Import the valid records of a file with bad ones; skip unreadable lines and "
            "files.",
        ),
    ] = False,
    update: Annotated[
        bool,
        typer.Option("--update", help="Store records whose content changed as new versions."),
    ] = False,
    domain: Annotated[
        str | None, typer.Option(help="Domain to set on imported experiences.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import experiences: native JSON/JSONL, other agents' trace formats, the store's own
    lossless export, or failure label files. Each file is imported whole or not at all; records
    already stored are reported unchanged, so an import can be run again safely."""
    from kb.errors import Invalid, KBError
    from kb.importers import FORMATS

    if format not in FORMATS:
        raise Invalid(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    results: list[dict[str, Any]] = []
    with store() as kb:
        for path in paths:
            # no total: counting the records first would read (and parse) the file twice
            with progress_bar(f"importing {path.name}", None, enabled=not as_json) as advance:
                try:
                    report = kb.import_file(
                        path,
                        format,
                        skip_invalid=skip_invalid,
                        update=update,
                        domain=domain,
                        progress=advance,
                    )
                except KBError as exc:
                    if len(paths) == 1:
                        raise  # one file: its error is the answer
                    results.append({"path": str(path), "error": str(exc)})
                    continue
            results.append(report.model_dump(mode="json"))
    failed = [r for r in results if "error" in r and not skip_invalid]
    if as_json:
        print_json(results if len(results) > 1 else results[0])
    else:
        for data in results:
            if "error" in data:
                console.print(
                    f"[red]{'skipped' if skip_invalid else 'failed'}[/red] {data['error']}",
                    highlight=False,
                )
                continue
            counts = ", ".join(
                f"{len(data.get(key) or [])} {key}"
                for key in ("added", "unchanged", "updated", "merged", "skipped", "labelled")
                if data.get(key)
            )
            console.print(
                f"{data['path']}: {counts or 'nothing'} ({data.get('format', 'labels')})",
                highlight=False,
            )
            for skipped in (data.get("skipped") or [])[:20]:
                console.print(
                    f"  skipped record {skipped.get('record')}: {skipped.get('error')}",
                    highlight=False,
                )
    if failed:
        stored = [r["path"] for r in results if "error" not in r]
        raise fail(
            f"{len(failed)} of {len(results)} files not imported (nothing from them was stored)"
            + (f"; stored: {', '.join(stored)}" if stored else ""),
            as_json=False,
        )


@app.command()
@handle_errors
def update(
    experience_id: Annotated[str, typer.Argument(help="The experience to change (exp_...).")],
    file: Annotated[
        Path | None, typer.Argument(help="JSON object of the fields to change, or -.")
    ] = None,
    outcome: Annotated[
        str | None, typer.Option(help="success | failure | partial | unknown")
    ] = None,
    strategy: Annotated[str | None, typer.Option(help="The plan or lesson, in prose.")] = None,
    lesson: Annotated[list[str] | None, typer.Option(help="A lesson (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change an experience: it becomes its next version, the previous content stays readable
    (`kb history`)."""
    from kb.errors import Invalid

    changes: dict[str, Any] = {}
    if file is not None:
        raw = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        try:
            changes = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise Invalid(f"{file}: not valid JSON ({exc.msg})") from exc
        if not isinstance(changes, dict):
            raise Invalid(f"{file}: give a JSON object of the fields to change")
    changes.update(
        {k: v for k, v in {"outcome": outcome, "strategy": strategy}.items() if v is not None}
    )
    if lesson:
        changes["lessons"] = lesson
    if not changes:
        raise Invalid("nothing to change: give a JSON file or --outcome/--strategy/--lesson")
    with store() as kb:
        updated = kb.update_experience(experience_id, changes)
    if as_json:
        print_json(updated)
    else:
        console.print(f"{updated.id} is now version {updated.version}")


@app.command()
@handle_errors
def feedback(
    item_id: Annotated[str, typer.Argument(help="An experience or skill id you relied on.")],
    success: Annotated[bool, typer.Option("--success/--failure", help="Whether it helped.")] = True,
    note: Annotated[str | None, typer.Option(help="Why (required with --failure).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record whether an experience or skill helped; this steers future ranking."""
    from kb.errors import Invalid

    if not success and not (note and note.strip()):
        raise Invalid("say why it did not help: --note '...'")
    with store() as kb:
        usage = kb.feedback(item_id, success=success, note=note)
    if as_json:
        print_json(usage)
    else:
        console.print(f"{usage.id}: {usage.uses} uses, success rate {usage.success_rate:.0%}")


@app.command()
@handle_errors
def delete(
    experience_id: Annotated[str, typer.Argument(help="The experience to delete (exp_...).")],
    as_json: JsonOpt = False,
) -> None:
    """Delete an experience: a tombstone that search and lists hide. `kb restore` undoes it;
    `kb purge` removes it for good."""
    with store() as kb:
        tombstone = kb.delete_experience(experience_id)
    if as_json:
        print_json({"id": tombstone.id, "deleted_at": tombstone.deleted_at})
    else:
        console.print(f"deleted {tombstone.id} (kb restore {tombstone.id} brings it back)")


@app.command()
@handle_errors
def restore(
    experience_id: Annotated[str, typer.Argument(help="A deleted experience (exp_...).")],
    as_json: JsonOpt = False,
) -> None:
    """Bring back a deleted experience."""
    with store() as kb:
        restored = kb.restore_experience(experience_id)
    print_json({"id": restored.id}) if as_json else console.print(f"restored {restored.id}")


@app.command()
@handle_errors
def history(
    experience_id: Annotated[str, typer.Argument(help="An experience (exp_...).")],
    as_json: JsonOpt = False,
) -> None:
    """Every version of an experience, oldest first (an update keeps the previous content)."""
    with store() as kb:
        versions = kb.experience_history(experience_id)
    if as_json:
        print_json(versions)
        return
    for exp in versions:
        state = " (deleted)" if exp.deleted_at else ""
        console.print(
            f"v{exp.version} {exp.updated_at:%Y-%m-%d %H:%M:%S} {exp.outcome.value}{state}: "
            f"{exp.task[:80]}",
            highlight=False,
        )


@app.command()
@handle_errors
def purge(
    ids: Annotated[
        list[str] | None, typer.Argument(help="Deleted experiences to purge (default: all).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove deleted experiences for good: content, earlier versions, edges, events and index
    rows, and rewrite the files so nothing of them stays on disk (for a leaked secret)."""
    if not yes and not as_json and not typer.confirm("Purge deleted experiences for good?"):
        raise typer.Exit(1)
    with store() as kb:
        purged = kb.purge(ids or None)
    print_json({"purged": purged}) if as_json else console.print(f"purged {len(purged)}")


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
def distill(
    ids: Annotated[
        list[str] | None, typer.Argument(help="Experiences to distill (default: all).")
    ] = None,
    llm: Annotated[
        bool,
        typer.Option(
            "--llm", help="Ask the OpenAI-compatible model of KB_LLM_BASE_URL / KB_LLM_MODEL."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Distill again even when nothing changed.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Distill strategy, plan and lessons from stored runs (offline rules, or --llm).

    Only empty fields and fields distilled before are written: human-written text stays.
    """
    with store() as kb:
        total = len(ids) if ids else kb.stats().experiences
        with progress_bar("distilling", total, enabled=not as_json) as advance:
            report = kb.distill(
                ids or None, method="llm" if llm else "offline", force=force, progress=advance
            )
    if as_json:
        print_json(report)
        return
    console.print(
        f"distilled {len(report.distilled)}, unchanged {len(report.unchanged)}, "
        f"failed {len(report.failed)} ({report.method})",
        highlight=False,
    )
    for item in report.failed[:20]:
        console.print(f"[red]failed[/red] {item['id']}: {item['error']}", highlight=False)
    if report.failed:
        raise typer.Exit(1)


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


from kb.cli import gate as _gate  # noqa: E402
from kb.cli import serve as _serve  # noqa: E402
from kb.cli import skill as _skill  # noqa: E402
from kb.cli import trace as _trace  # noqa: E402
from kb.cli import view as _view  # noqa: E402

for _module in (_skill, _trace, _serve, _view, _gate):
    _module.register(app)


def main() -> None:
    """Console entry point."""
    app()
