"""The listing page of a namespace's runs, and the small pages of the HTTP viewer."""

from __future__ import annotations

from collections.abc import Sequence

from kb.view.model import ListItem
from kb.view.page import esc, page

OUTCOMES = ("failure", "success", "partial", "unknown")


def render_list(
    items: Sequence[ListItem],
    *,
    outcome: str | None = "failure",
    domain: str | None = None,
    link: str | None = None,
    live: bool = False,
    title: str = "Runs",
) -> str:
    """The listing page: experiences newest first with their blamed agent and step.

    Args:
        items: the rows, newest first.
        outcome, domain: the filters the rows were listed with (shown in the form).
        link: a pattern for links to runs (``"/view/{id}"``); None shows ids without links.
        live: the filter form asks the server again (GET); otherwise it filters the rows on the
            page.
    """
    domains = sorted({i.domain for i in items if i.domain} | ({domain} if domain else set()))
    options = "".join(
        f'<option value="{v}"{" selected" if (outcome or "all") == v else ""}>{v}</option>'
        for v in ("all", *OUTCOMES)
    )
    form = (
        f'<form id="filter" class="filter" method="get" data-live="{"1" if live else "0"}">'
        f'<label>outcome <select name="outcome" id="f-outcome">{options}</select></label>'
        f'<label>domain <input name="domain" id="f-domain" list="f-domains" size="14" '
        f'value="{esc(domain or "")}"></label><datalist id="f-domains">'
        + "".join(f'<option value="{esc(d)}">' for d in domains)
        + '</datalist><label>text <input id="f-text" size="18" placeholder="in the task"></label>'
        '<button type="submit">filter</button><output id="count"></output></form>'
    )
    rows = []
    for item in items:
        task = esc(item.task[:200])
        cell = f'<a href="{esc(link.format(id=item.id))}">{task}</a>' if link else task
        blamed = (
            f"{esc(item.blamed_agent or '?')} · step {item.blamed_step}"
            if item.blamed_step is not None
            else '<span class="dim">not traced</span>'
        )
        method = esc(item.method or "")
        if item.labelled and item.method != "label":
            method += " + label"
            if item.label_step != item.blamed_step:
                blamed += f' <span class="m-label-text">(label: step {item.label_step})</span>'
        rows.append(
            f'<tr data-id="{esc(item.id)}" data-outcome="{esc(item.outcome)}" '
            f'data-domain="{esc(item.domain or "")}" tabindex="-1">'
            f"<td>{esc(item.created_at.isoformat(timespec='minutes') if item.created_at else '')}</td>"
            f'<td><span class="badge o-{esc(item.outcome)}">{esc(item.outcome)}</span></td>'
            f'<td class="task">{cell}<br><code class="dim">{esc(item.id)}</code></td>'
            f"<td>{esc(item.domain or '')}</td><td>{esc(item.agent or '')}</td>"
            f"<td>{blamed}</td><td>{method}</td><td>{item.steps}</td></tr>"
        )
    table = (
        '<table class="listing"><thead><tr><th>created</th><th>outcome</th><th>task</th>'
        "<th>domain</th><th>agent</th><th>blamed</th><th>method</th><th>steps</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="note">Nothing to show.</p>'
    )
    hint = "" if link else '<p class="note">Open one with <code>kb view ID</code>.</p>'
    signout = (
        '<form class="signout" method="post" action="/view/logout">'
        '<button type="submit">sign out</button></form>'
        if live
        else ""
    )
    body = (
        f'<header class="top">{signout}<h1>{esc(title)}</h1><p class="facts">{len(items)} runs, newest first'
        f"{' · ' + esc(outcome) if outcome else ''}{' · domain ' + esc(domain) if domain else ''}"
        f'</p></header>{form}<main class="list">{table}{hint}</main>'
    )
    return page(title, body, script="list.js", body_attrs=' class="listpage"')


def render_message(title: str, message: str) -> str:
    """A small page with one message (an error of the HTTP viewer)."""
    body = (
        f'<main class="login"><h1>{esc(title)}</h1><p>{esc(message)}</p>'
        '<p><a href="/view">all runs</a></p></main>'
    )
    return page(title, body)


def render_login(*, error: str | None = None, next_path: str = "/view") -> str:
    """The sign-in form of the HTTP viewer: a token, sent once by POST, kept in a cookie."""
    message = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    body = (
        '<main class="login"><h1>kb view: sign in</h1>'
        "<p>Paste a token from <code>kb token create</code>. It is kept in a cookie that scripts "
        "cannot read; it never appears in a URL.</p>"
        f'{message}<form method="post" action="/view/login" autocomplete="off">'
        f'<input type="hidden" name="next" value="{esc(next_path)}">'
        '<label>token <input type="password" name="token" required autofocus size="48"></label> '
        '<button type="submit">sign in</button></form></main>'
    )
    return page("kb view: sign in", body)


__all__ = ["OUTCOMES", "render_list", "render_login", "render_message"]
