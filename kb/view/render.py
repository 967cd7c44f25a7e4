"""The run page: a run to step through, with its attribution, curves and nearest success."""

from __future__ import annotations

import json
from pathlib import PurePath

from kb.models import Attribution, Experience, Step
from kb.view.model import AlignedRow, Alignment, Neighbour, RunView
from kb.view.page import block, esc, json_script, page
from kb.view.plot import curve

OP_MARK = {
    "same": ("=", "the same kind of step"),
    "args": ("≠", "the same tool, other arguments"),
    "error": ("✕", "the same action; only one side failed"),
    "changed": ("≠", "different actions"),
    "only_left": ("−", "only this run"),
    "only_right": ("+", "only the success"),
}


def _score_bar(score: float | None, top: float) -> str:
    if score is None:
        return '<span class="score none" title="not scored"></span>'
    width = 0.0 if top <= 0 else max(0.0, min(1.0, score / top)) * 100
    return (
        f'<span class="score" title="tracer score {score:.3f}" data-score="{score:.4f}">'
        f'<span class="bar" style="width:{width:.1f}%"></span></span>'
    )


def _is_call(step: Step) -> bool:
    return bool(step.tool) and step.kind not in {"observation", "error"}


def _failed(step: Step) -> bool:
    return bool(step.error) or step.kind == "error"


def _step_summary(step: Step, width: int = 140) -> str:
    """One line for an aligned row: the call, or who said what."""
    if step.tool and _is_call(step):
        args = json.dumps(step.args, ensure_ascii=False, default=str) if step.args else ""
        text = f"→ {step.tool}({args[1:-1] if args else ''})"
    elif step.tool:
        text = f"← {step.tool}: {step.error or step.result or step.content or ''}"
    else:
        text = f"{step.role or step.agent or '?'}: {(step.content or '').strip()}"
    text = " ".join(text.split())
    return text[:width] + ("…" if len(text) > width else "")


def _step(step: Step, view: RunView, top: float, divergence: int | None) -> str:
    classes = ["step", f"role-{esc(step.role or 'none')}", f"kind-{esc(step.kind)}"]
    marks = []
    tracer, label = view.tracer, view.label
    if view.blamed_step == step.index:
        classes.append("blamed")
    if tracer is not None and tracer.step == step.index:
        marks.append(
            f'<span class="mark m-blamed">blamed · {esc(tracer.method)} '
            f"{tracer.confidence:.2f}</span>"
        )
    if label is not None and label.step == step.index:
        classes.append("labelled")
        marks.append('<span class="mark m-label">human label</span>')
    if divergence == step.index:
        classes.append("diverges")
        marks.append('<span class="mark m-div">diverges from the success</span>')
    if _failed(step):
        classes.append("has-error")
    attrs = [
        f'id="step-{step.index}"',
        f'data-index="{step.index}"',
        'tabindex="-1"',
    ]
    if step.tool:
        attrs.append(f'data-tool="{esc(step.tool)}"')
    if _is_call(step):
        attrs.append('data-call="1"')
    if _failed(step):
        attrs.append('data-error="1"')
    score = view.scores[step.index] if step.index < len(view.scores) else None
    who = esc(step.agent or step.role or "?")
    head = (
        '<header><button type="button" class="gutter" data-act="bp-step" '
        f'title="breakpoint on step {step.index}" aria-label="breakpoint on step {step.index}">'
        "</button>"
        f'<span class="idx">#{step.index}</span><span class="who">{who}</span>'
        + (
            f'<span class="role">{esc(step.role)}</span>'
            if step.role and step.role != step.agent
            else ""
        )
        + f'<span class="kind">{esc(step.kind)}</span>'
        + (f'<code class="tool">{esc(step.tool)}</code>' if step.tool else "")
        + f'<span class="marks">{"".join(marks)}</span>{_score_bar(score, top)}</header>'
    )
    parts = []
    if step.content:
        parts.append(block("", step.content, "content", pretty=False))
    if step.args is not None and _is_call(step):
        args = json.dumps(step.args, indent=2, ensure_ascii=False, default=str)
        parts.append(block("arguments", args, "args"))
    elif step.args:
        parts.append(block("arguments", json.dumps(step.args, indent=2, default=str), "args"))
    if step.result and step.result != step.error:
        parts.append(block("result", step.result, "result"))
    if step.error:
        parts.append(block("error", step.error, "error"))
    if not parts:
        parts.append('<div class="block empty">(empty)</div>')
    meta = []
    if step.timestamp is not None:
        meta.append(esc(step.timestamp.isoformat(timespec="seconds")))
    if step.duration is not None:
        meta.append(f"{step.duration:.2f}s")
    foot = f'<footer class="meta">{" · ".join(meta)}</footer>' if meta else ""
    return (
        f'<article class="{" ".join(classes)}" {" ".join(attrs)}>{head}'
        f'<div class="body">{"".join(parts)}</div>{foot}</article>'
    )


def _attribution_card(title: str, css: str, a: Attribution, steps: list[Step]) -> str:
    go = (
        f'<button type="button" class="go" data-goto="{a.step}">step {a.step}</button>'
        if a.step is not None and a.step < len(steps)
        else ""
    )
    facts = (
        f"agent <b>{esc(a.agent or '?')}</b> · step <b>{'?' if a.step is None else a.step}</b>"
        f" · confidence <b>{a.confidence:.2f}</b>"
    )
    reason = f'<p class="reason">{esc(a.reason)}</p>' if a.reason else ""
    corrected = (
        f'<p class="corrected"><span class="lbl">should have been</span> {esc(a.corrected)}</p>'
        if a.corrected
        else ""
    )
    return (
        f'<div class="card {css}"><h3>{esc(title)} <span class="method">{esc(a.method)}</span>'
        f'{go}</h3><p class="facts">{facts}</p>{reason}{corrected}</div>'
    )


def _evidence(view: RunView) -> str:
    blamed = view.blamed_step
    exp = view.experience
    if blamed is None or not 0 <= blamed < len(exp.steps):
        return ""
    step = exp.steps[blamed]
    parts = [f"<p><b>#{blamed}</b> {esc(_step_summary(step))}</p>"]
    if step.error:
        parts.append(f'<pre class="error">{esc(step.error[:400])}</pre>')
    nearest = view.nearest
    row = nearest.counterpart(blamed) if nearest is not None else None
    if nearest is not None and row is not None:
        if row.right is not None:
            other = nearest.success.steps[row.right]
            parts.append(
                f"<p>the success at this point (<b>#{row.right}</b>, {esc(OP_MARK[row.op][1])}): "
                f"{esc(_step_summary(other))}</p>"
            )
        else:
            parts.append("<p>the success has no step here: only this run took it.</p>")
    return f'<div class="card evidence"><h3>Evidence at the blamed step</h3>{"".join(parts)}</div>'


def _attribution_section(view: RunView) -> str:
    steps = view.experience.steps
    cards = []
    if view.tracer is not None:
        cards.append(_attribution_card("Tracer", "tracer", view.tracer, steps))
    if view.label is not None:
        cards.append(_attribution_card("Human label", "label", view.label, steps))
    if view.tracer is not None and view.label is not None and view.tracer.step != view.label.step:
        cards.append(
            f'<p class="note disagree">The tracer blames step {view.tracer.step}; '
            f"the label says step {view.label.step}.</p>"
        )
    if not cards:
        cards.append(
            '<p class="note">Not attributed yet: <code>kb trace ID</code> names the step, '
            "or <code>kb label ID --step N</code>.</p>"
        )
    cards.append(_evidence(view))
    cards += [f'<p class="note disagree">{esc(note)}</p>' for note in view.notes]
    return f'<section class="panel" id="attribution"><h2>Attribution</h2>{"".join(cards)}</section>'


def _divergence_step(alignment: Alignment | None) -> int | None:
    """The step of this run where it parts from the success (the next step of this run when the
    success took a step of its own there)."""
    if alignment is None or alignment.divergence is None:
        return None
    for row in alignment.rows[alignment.divergence :]:
        if row.left is not None:
            return row.left
    return next((r.left for r in reversed(alignment.rows) if r.left is not None), None)


def _curves(view: RunView, divergence: int | None) -> str:
    markers: list[tuple[int, str, str]] = []
    if view.tracer is not None and view.tracer.step is not None:
        markers.append(
            (view.tracer.step, "m-blamed", f"blamed by the tracer: step {view.tracer.step}")
        )
    if view.label is not None and view.label.step is not None:
        markers.append((view.label.step, "m-label", f"human label: step {view.label.step}"))
    if divergence is not None:
        markers.append((divergence, "m-div", f"diverges from the success at step {divergence}"))
    parts = []
    if any(s is not None for s in view.scores):
        parts.append(
            "<h3>Step scores</h3>"
            + curve(
                view.scores, name="scores", title="the tracer's score of each step", markers=markers
            )
        )
    else:
        parts.append('<p class="note">No step scores: the tracer has not scored this run.</p>')
    if view.risk and any(r is not None for r in view.risk):
        parts.append(
            "<h3>Session risk</h3>"
            + curve(
                view.risk,
                name="risk",
                title="the gate's session risk after each step",
                markers=markers,
                threshold=view.risk_threshold,
            )
        )
    legend = (
        '<p class="legend"><span class="key m-blamed"></span>blamed '
        '<span class="key m-label"></span>label <span class="key m-div"></span>divergence '
        '<span class="key cursor"></span>you are here</p>'
    )
    return f'<section class="panel" id="curves"><h2>Curves</h2>{"".join(parts)}{legend}</section>'


def _row(row: AlignedRow, n: int, view: RunView, nearest: Alignment) -> str:
    exp, other = view.experience, nearest.success
    mark, meaning = OP_MARK[row.op]
    classes = ["row", f"op-{row.op}"]
    extra = ""
    if n == nearest.divergence:
        classes.append("divergence")
        mark, extra = "⚑", ' id="divergence"'
    left = (
        f'<span class="idx">#{row.left}</span> {esc(_step_summary(exp.steps[row.left], 90))}'
        if row.left is not None
        else ""
    )
    right = (
        f'<span class="idx">#{row.right}</span> {esc(_step_summary(other.steps[row.right], 90))}'
        if row.right is not None
        else ""
    )
    data = "".join(
        f' data-{side}="{value}"'
        for side, value in (("left", row.left), ("right", row.right))
        if value is not None
    )
    return (
        f'<tr class="{" ".join(classes)}"{extra}{data} data-op="{row.op}">'
        f'<td class="l">{left}</td><td class="op" title="{esc(meaning)}">{mark}</td>'
        f'<td class="r">{right}</td></tr>'
    )


def _twins(nearest: Alignment) -> str:
    """The success's steps, one hidden block each; the script shows the one aligned with the
    focused step."""
    out = []
    for step in nearest.success.steps:
        parts = [
            f'<p class="twin-head">success step <b>#{step.index}</b> · {esc(step.agent or step.role or "?")} · {esc(step.kind)}'
            + (f" · <code>{esc(step.tool)}</code>" if step.tool else "")
            + "</p>"
        ]
        if step.content:
            parts.append(block("", step.content, "content", pretty=False))
        if step.args is not None and _is_call(step):
            parts.append(block("arguments", json.dumps(step.args, indent=2, default=str), "args"))
        if step.result and step.result != step.error:
            parts.append(block("result", step.result, "result"))
        if step.error:
            parts.append(block("error", step.error, "error"))
        out.append(f'<div class="twin" data-right="{step.index}" hidden>{"".join(parts)}</div>')
    return "".join(out)


def _divergence_sentence(
    row: AlignedRow, exp: Experience, success: Experience, nxt: int | None
) -> str:
    """Where the runs part, in words (HTML-escaped); ``nxt``: this run's step at that point."""
    mine = exp.steps[row.left] if row.left is not None else None
    theirs = success.steps[row.right] if row.right is not None else None
    if mine is None and theirs is not None:
        before = f" before this run's step #{nxt}" if nxt is not None else ""
        return (
            f"The success took a step this run skipped{esc(before)}: #{row.right} "
            f"{esc(_step_summary(theirs))}."
        )
    if mine is not None and theirs is None:
        return f"This run took a step the success did not: #{row.left} {esc(_step_summary(mine))}."
    if mine is None or theirs is None:
        return ""
    what = {
        "args": "called the same tool with other arguments than",
        "error": "failed where it succeeded in",
        "changed": "did something else than",
    }.get(row.op, "matches")
    return (
        f"At step #{row.left} this run {what} the success's #{row.right}: "
        f"{esc(_step_summary(mine))} / {esc(_step_summary(theirs))}."
    )


def _nearest_section(view: RunView, link: str | None) -> str:
    nearest = view.nearest
    if nearest is None:
        return (
            '<section class="panel" id="nearest"><h2>Nearest success</h2>'
            '<p class="note">No successful run of the same or a similar task is stored.</p></section>'
        )
    success = nearest.success
    ref = _ref(success.id, link)
    kind = "the same task" if nearest.same_task else "a similar task"
    row = nearest.divergence_row()
    nxt = _divergence_step(nearest)
    if row is None:
        where = "<p>The two runs take the same steps.</p>"
    else:
        where = (
            f'<p class="diverge-note">{_divergence_sentence(row, view.experience, success, nxt)} '
            '<button type="button" class="go" data-act="divergence">go there</button></p>'
        )
    table = "".join(_row(r, n, view, nearest) for n, r in enumerate(nearest.rows))
    return (
        '<section class="panel" id="nearest"><h2>Nearest success</h2>'
        f"<p>{ref}: {kind}, signature similarity {nearest.similarity:.2f}.</p>"
        f'<p class="task">{esc(success.task[:300])}</p>{where}'
        '<table class="align"><thead><tr><th>this run</th><th></th><th>success</th></tr></thead>'
        f'<tbody>{table}</tbody></table><div class="twins"><h3>The success here</h3>'
        f'<p class="note twin-none">The success has no step aligned with this one.</p>'
        f"{_twins(nearest)}</div></section>"
    )


def _ref(item_id: str, link: str | None) -> str:
    if link:
        return f'<a href="{esc(link.format(id=item_id))}"><code>{esc(item_id)}</code></a>'
    return f'<code title="kb view {esc(item_id)}">{esc(item_id)}</code>'


def _neighbours(title: str, items: list[Neighbour], link: str | None, empty: str) -> str:
    if not items:
        return f'<h3>{esc(title)}</h3><p class="note">{esc(empty)}</p>'
    lis = "".join(
        f"<li>{_ref(n.id, link if n.id.startswith('exp_') else None)} "
        f'<span class="rel">{esc(n.relation)}</span>'
        + (f' <span class="badge o-{esc(n.outcome)}">{esc(n.outcome)}</span>' if n.outcome else "")
        + (f' <span class="badge s-{esc(n.status)}">{esc(n.status)}</span>' if n.status else "")
        + f" {esc(n.title[:160])}</li>"
        for n in items
    )
    return f'<h3>{esc(title)}</h3><ul class="links">{lis}</ul>'


def _details(exp: Experience) -> str:
    rows = []
    for label, value in (
        ("strategy", exp.strategy),
        ("final answer", exp.final_answer),
        ("ground truth", exp.ground_truth),
    ):
        if value:
            rows.append(block(label, value, "detail", pretty=False))
    if exp.plan:
        rows.append(block("plan", "\n".join(f"- {p}" for p in exp.plan), "detail", pretty=False))
    if exp.lessons:
        rows.append(
            block("lessons", "\n".join(f"- {p}" for p in exp.lessons), "detail", pretty=False)
        )
    if exp.gold_actions:
        rows.append(
            block("gold actions", json.dumps(exp.gold_actions, indent=2, default=str), "detail")
        )
    if not rows:
        return ""
    return f'<section class="panel" id="details"><h2>The run</h2>{"".join(rows)}</section>'


HELP = (
    ("j / k", "next / previous step"),
    ("n / N", "next / previous error"),
    ("t / T", "next / previous tool call"),
    ("b", "the blamed step"),
    ("l", "the labelled step"),
    ("d", "where the run diverges from the success"),
    ("c", "continue to the next breakpoint"),
    ("e or Enter", "unfold / fold the step"),
    ("g / G", "first / last step"),
    ("?", "this help"),
)


def render_run(view: RunView, *, link: str | None = None) -> str:
    """The run page: the conversation to step through, the attribution, the curves, the nearest
    success aligned beside it, repairs and derived skills.

    Args:
        view: what :meth:`kb.services.view.Viewer.gather_run` gathered.
        link: a pattern for links to other runs (``"/view/{id}"``, ``"{id}.html"``); None shows
            ids without links.
    Returns:
        one self-contained HTML document.
    """
    exp = view.experience
    divergence = _divergence_step(view.nearest)
    known = [s for s in view.scores if s is not None]
    top = max(known) if known else 0.0
    tools = sorted({s.tool for s in exp.steps if s.tool and _is_call(s)})
    prov = exp.provenance
    facts = [
        f'<span class="badge o-{esc(exp.outcome.value)}">{esc(exp.outcome.value)}</span>',
        f"<code>{esc(exp.id)}</code>",
        f"{len(exp.steps)} steps",
    ]
    facts += [
        f"{k} <b>{esc(v)}</b>" for k, v in (("domain", exp.domain), ("agent", exp.agent)) if v
    ]
    source = PurePath(prov.imported_from).name if prov.imported_from else prov.source
    facts.append(
        f'from <span title="{esc(prov.imported_from or prov.source)}">{esc(source)}</span>'
        + (f" #{esc(prov.source_id)}" if prov.source_id else "")
    )
    facts.append(esc(prov.created_at.isoformat(timespec="seconds")))
    header = (
        f'<header class="top"><h1>{esc(exp.task[:400])}</h1>'
        f'<p class="facts">{" · ".join(facts)}</p></header>'
    )
    datalist = "".join(f'<option value="{esc(t)}">' for t in tools)
    toolbar = (
        '<nav class="toolbar" aria-label="stepping">'
        '<button type="button" data-act="prev" title="k">◀ prev</button>'
        '<button type="button" data-act="next" title="j">next ▶</button>'
        '<button type="button" data-act="next-error" title="n">next error</button>'
        '<button type="button" data-act="next-call" title="t">next tool call</button>'
        '<button type="button" data-act="blamed" title="b">blamed step</button>'
        + (
            '<button type="button" data-act="divergence" title="d">divergence</button>'
            if divergence is not None
            else ""
        )
        + '<span class="sep"></span>'
        '<form id="bp-form" class="bp" autocomplete="off"><label>break on tool '
        f'<input id="bp-tool" list="bp-tools" size="14" placeholder="tool name"></label>'
        f'<datalist id="bp-tools">{datalist}</datalist>'
        '<button type="submit">add</button></form>'
        '<label class="bp"><input type="checkbox" id="bp-errors"> break on errors</label>'
        '<button type="button" data-act="continue" title="c">continue ▶▶</button>'
        '<span id="bp-list" class="chips"></span>'
        '<button type="button" data-act="help" title="?" class="help-btn">keys</button>'
        '<output id="status" aria-live="polite"></output></nav>'
    )
    help_box = (
        '<div id="help" class="help" hidden><h2>Keys</h2><dl>'
        + "".join(f"<dt><kbd>{esc(k)}</kbd></dt><dd>{esc(v)}</dd>" for k, v in HELP)
        + "</dl><p>Breakpoints: a tool name, errors, or a step (click the dot at its left); "
        "<kbd>c</kbd> runs to the next one.</p></div>"
    )
    steps = "".join(_step(s, view, top, divergence) for s in exp.steps)
    if not steps:
        steps = '<p class="note">This run has no steps.</p>'
    side = (
        _attribution_section(view)
        + _curves(view, divergence)
        + _nearest_section(view, link)
        + '<section class="panel" id="links"><h2>Neighbourhood</h2>'
        + _neighbours(
            "Repairs", view.repairs, link, "No repaired_by link: no success of this task is linked."
        )
        + _neighbours("Skills derived from it", view.skills, link, "No skill was derived from it.")
        + "</section>"
        + _details(exp)
    )
    data = {
        "steps": len(exp.steps),
        "blamed": view.blamed_step,
        "label": view.label.step if view.label is not None else None,
        "tracer": view.tracer.step if view.tracer is not None else None,
        "divergence": divergence,
        "rows": (
            [[r.left, r.right, r.op] for r in view.nearest.rows] if view.nearest is not None else []
        ),
    }
    body = (
        header
        + toolbar
        + help_box
        + f'<main class="layout"><section class="conversation" id="steps" aria-label="steps">'
        f'{steps}</section><aside class="side">{side}</aside></main>'
        + f'<footer class="foot">kb view · {esc(view.generated_at.isoformat(timespec="seconds"))}'
        " · <kbd>?</kbd> for keys</footer>" + json_script("kb-data", data)
    )
    return page(
        f"{exp.outcome.value}: {exp.task[:80]}", body, script="run.js", body_attrs=' class="run"'
    )


__all__ = ["OP_MARK", "render_run"]
