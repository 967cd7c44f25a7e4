"""``kb trace``, ``kb label``, ``kb train-tracer``: failure attribution."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from kb.cli.common import JsonOpt, console, handle_errors, print_json, progress_bar, store

MethodOpt = Annotated[
    str,
    typer.Option(
        help="auto | heuristic | learned | llm | llm:all_at_once | llm:step_by_step | "
        "llm:binary_search | counterfactual"
    ),
]


@handle_errors
def trace(
    target: Annotated[
        str, typer.Argument(help="An experience id, a trajectory file, or a folder of them.")
    ],
    method: MethodOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Name the agent and the step that caused a failure, why, and how sure.

    On an id the attribution is stored on the experience. On a file or folder every trajectory is
    traced; --json prints one JSON object per line with the file name, mistake_agent and
    mistake_step (0-based position in the log).
    """
    from kb.errors import KBError

    with store() as kb:
        if target.startswith("exp_") and not Path(target).exists():
            attribution = kb.trace(target, method=method)
            if as_json:
                print_json({"id": target, **attribution.model_dump(mode="json")})
            else:
                console.print(
                    f"[bold]{target}[/bold]: agent [bold]{attribution.agent}[/bold], "
                    f"step [bold]{attribution.step}[/bold] (confidence {attribution.confidence:.2f}, "
                    f"{attribution.method})\n  {attribution.reason}",
                    highlight=False,
                )
            return
        path = Path(target)
        if not path.exists():
            raise KBError(f"{target}: no such experience id, file or folder")
        agents: Counter[str] = Counter()
        errors = traced = 0
        with progress_bar("tracing", None, enabled=not as_json) as advance:
            for line in kb.trace_file(path, method=method):
                advance(1)
                result = line.model_dump(exclude={"error"} if line.error is None else set())
                if as_json:
                    print_json(result)
                if line.error is not None:
                    errors += 1
                    if not as_json:
                        console.print(
                            f"[red]error[/red] {result['file']} #{result['record']}: "
                            f"{result['error']}",
                            highlight=False,
                        )
                    continue
                traced += 1
                agents[str(result["mistake_agent"])] += 1
                if not as_json:
                    console.print(
                        f"{Path(result['file']).name} #{result['record']}: agent "
                        f"[bold]{result['mistake_agent']}[/bold] step "
                        f"[bold]{result['mistake_step']}[/bold] ({result['confidence']:.2f}) "
                        f"{str(result['reason'])[:120]}",
                        highlight=False,
                    )
    if not as_json:
        top = ", ".join(f"{agent} {count}" for agent, count in agents.most_common(5))
        console.print(f"traced {traced}, errors {errors}; blamed agents: {top or 'none'}")


@handle_errors
def label(
    experience_id: Annotated[str, typer.Argument(help="The failed experience.")],
    step: Annotated[int, typer.Option(help="The step that caused the failure (0-based).")],
    agent: Annotated[
        str | None, typer.Option(help="The agent responsible (default: the step's).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Label a failure by hand (labels train the learned tracer and are never overwritten)."""
    with store() as kb:
        attribution = kb.label(experience_id, step=step, agent=agent, reason=reason)
    if as_json:
        print_json(attribution)
    else:
        console.print(
            f"labelled {experience_id}: step {attribution.step}, agent {attribution.agent}"
        )


@handle_errors
def train_tracer(as_json: JsonOpt = False) -> None:
    """Fit the learned tracer on the labelled failures in the store."""
    with store() as kb:
        result = kb.train_tracer()
    if as_json:
        print_json(result)
    else:
        console.print(
            f"trained on {result.examples} labelled failures "
            f"(train step accuracy {result.train_step_accuracy:.0%}); saved to {result.path}"
        )


def register(app: typer.Typer) -> None:
    """Add the tracing commands to the app."""
    app.command("trace")(trace)
    app.command("label")(label)
    app.command("train-tracer")(train_tracer)
