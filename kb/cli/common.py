"""Shared plumbing of the ``kb`` CLI: store options, output, errors, progress bars."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console

if TYPE_CHECKING:
    from kb.service import KnowledgeBase

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


class State:
    """Options given before the command (``kb --store PATH --namespace NS ...``)."""

    store: Path | None = None
    namespace: str | None = None


state = State()


def open_kb() -> KnowledgeBase:
    from kb.service import KnowledgeBase

    return KnowledgeBase.open(state.store, namespace=state.namespace)


@contextmanager
def store() -> Iterator[KnowledgeBase]:
    kb = open_kb()
    try:
        yield kb
    finally:
        kb.close()


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), ensure_ascii=False, default=str) + "\n")


def fail(message: str, *, as_json: bool) -> typer.Exit:
    if as_json:
        print_json({"error": message})
    else:
        err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def handle_errors(fn: F) -> F:
    """A user mistake prints one line (``{"error": ...}`` with ``--json``) and exits 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from kb.errors import KBError

        as_json = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except KBError as exc:
            raise fail(str(exc), as_json=as_json) from None
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise fail(f"{exc.strerror}: {exc.filename}", as_json=as_json) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def progress_bar(
    description: str, total: int | None, *, enabled: bool = True
) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields ``advance(n)``."""
    if not enabled or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
