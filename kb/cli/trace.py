"""``kb trace``, ``kb label``, ``kb tracer synth|train``: failure attribution."""

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


tracer_app = typer.Typer(
    help="The trained tracer: make labelled failures by fault injection, train on labels.",
    no_args_is_help=True,
)


@handle_errors
def synth(
    out: Annotated[Path, typer.Argument(help="The JSONL file to write the failures to.")],
    sources: Annotated[
        list[Path] | None,
        typer.Option(
            "--from", help="A trajectory file or folder whose successes get faults (repeatable)."
        ),
    ] = None,
    from_store: Annotated[
        bool, typer.Option("--from-store", help="Also use the store's successful runs.")
    ] = False,
    team_runs: Annotated[
        int, typer.Option(help="Also generate this many replayable multi-agent runs.")
    ] = 0,
    split: Annotated[
        str, typer.Option(help="train | heldout: domains, agent names and wording of those runs.")
    ] = "train",
    per_success: Annotated[int, typer.Option(help="Faults tried per success.")] = 3,
    faults: Annotated[
        str | None, typer.Option(help="Comma-separated fault types (default: all).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed: the same seed makes the same file.")] = 0,
    add: Annotated[
        bool, typer.Option("--add", help="Also add the labelled failures to the store.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Inject programmed faults into successful runs and write labelled failures (agent, step,
    fault type) as native JSONL; faults in replayable runs are confirmed to flip the outcome."""
    kinds = [f.strip() for f in faults.split(",") if f.strip()] if faults else None
    with store() as kb:
        report = kb.synthesize_failures(
            out,
            sources=sources or [],
            from_store=from_store,
            team_runs=team_runs,
            split=split,
            per_success=per_success,
            faults=kinds,
            seed=seed,
            add=add,
        )
    if as_json:
        print_json(report)
        return
    confirmed = sum(report.confirmed.values())
    console.print(
        f"{report.failures} labelled failures from {report.successes} successes -> {report.path}"
        f" ({confirmed} confirmed to flip the outcome: "
        f"{', '.join(f'{k} {v}' for k, v in report.confirmed.items()) or 'none'}; "
        f"{report.unconfirmed} unconfirmed; {report.dropped_no_flip} dropped, no flip)",
        highlight=False,
    )
    console.print(
        "by fault: " + ", ".join(f"{k} {v}" for k, v in sorted(report.by_fault.items())),
        highlight=False,
    )
    if add:
        console.print(f"added {report.imported} to the store")


@handle_errors
def train_tracer(
    with_successes: Annotated[
        bool,
        typer.Option(
            "--with-successes", help="Also inject faults into the store's successful runs."
        ),
    ] = False,
    per_success: Annotated[int, typer.Option(help="Faults per success (with successes).")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the faults and the fit.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Train the tracer on the store's labelled failures (the shipped model fine-tuned on them)."""
    with store() as kb, progress_bar("training the tracer", None, enabled=not as_json):
        result = kb.train_tracer(with_successes=with_successes, per_success=per_success, seed=seed)
    if as_json:
        print_json(result)
    else:
        console.print(
            f"trained on {result.examples} labelled failures ({result.labels} labels, "
            f"{result.synthetic} synthetic; train step accuracy "
            f"{result.train_step_accuracy:.0%}, agent {result.train_agent_accuracy:.0%}); "
            f"saved to {result.path}"
        )


def register(app: typer.Typer) -> None:
    """Add the tracing commands to the app."""
    app.command("trace")(trace)
    app.command("label")(label)
    tracer_app.command("synth")(synth)
    tracer_app.command("train")(train_tracer)
    app.add_typer(tracer_app, name="tracer")
    app.command("train-tracer", hidden=True)(train_tracer)  # the old name
