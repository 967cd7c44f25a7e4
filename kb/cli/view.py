"""``kb view``: a run (or the listing of runs) as one self-contained HTML page."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from kb.cli.common import JsonOpt, console, handle_errors, print_json, store


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


@handle_errors
def view(
    experience_id: Annotated[
        str | None, typer.Argument(help="The experience to show (exp_...); omit with --list.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the HTML (default ./ID.html or ./runs.html; - for stdout).",
        ),
    ] = None,
    open_page: Annotated[
        bool, typer.Option("--open", help="Open the page in the default web browser.")
    ] = False,
    listing: Annotated[
        bool, typer.Option("--list", help="List the namespace's runs instead of showing one.")
    ] = False,
    outcome: Annotated[
        str, typer.Option(help="With --list: failure | success | partial | unknown | all.")
    ] = "failure",
    domain: Annotated[str | None, typer.Option(help="With --list: only this domain.")] = None,
    limit: Annotated[int, typer.Option(help="With --list: at most this many runs.")] = 50,
    runs: Annotated[
        bool,
        typer.Option(
            "--runs", help="With --list: also write each listed run as ID.html beside the list."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a run as one HTML page to step through: the conversation, the blamed step, the
    step scores, the nearest success aligned beside it, repairs and derived skills.

    Keys in the page: j/k step, n next error, t next tool call, b blamed step, d divergence,
    c continue to the next breakpoint, ? all keys. The file needs no server and no network.
    With --list it writes the namespace's runs instead, failures first by default.
    """
    from kb.errors import Invalid

    if listing == (experience_id is not None):
        raise Invalid("give an experience id, or --list (not both)")
    if runs and (not listing or output == Path("-")):
        raise Invalid("--runs needs --list and an output file")
    written: list[str] = []
    with store() as kb:
        if experience_id is not None:
            html = kb.view_html(experience_id)
            path = output or Path(f"{experience_id}.html")
        else:
            html = kb.view_list_html(
                outcome=outcome, domain=domain, limit=limit, link="{id}.html" if runs else None
            )
            path = output or Path("runs.html")
            if runs:
                chosen = None if outcome == "all" else outcome
                for item in kb.list_experiences(outcome=chosen, domain=domain, limit=limit):
                    run_path = path.parent / f"{item.id}.html"
                    _write(run_path, kb.view_html(item.id))
                    written.append(str(run_path))
    if path == Path("-"):
        sys.stdout.write(html)
        return
    _write(path, html)
    if open_page:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
    if as_json:
        print_json({"path": str(path), "runs": written})
    else:
        more = f" and {len(written)} run pages beside it" if written else ""
        console.print(f"wrote {path}{more}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``kb view`` to the app."""
    app.command("view")(view)
