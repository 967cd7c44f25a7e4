"""The page every view shares: one self-contained HTML document.

The style and the script ship in this package (``assets/``) and are inlined; nothing is loaded
from a network. Stored text is untrusted: every field is escaped, and a Content-Security-Policy
lets only the page's own script (pinned by its hash) run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from functools import cache
from importlib.resources import files
from typing import Any

FOLD_CHARS = 600
"""Text longer than this (or than ``FOLD_LINES`` lines) is folded behind its first line."""
FOLD_LINES = 12


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


@cache
def asset(name: str) -> str:
    """A file shipped in ``kb/view/assets``."""
    return files("kb.view").joinpath("assets", name).read_text(encoding="utf-8")


def policy_for(script: str) -> str:
    """The Content-Security-Policy of a page whose one script is ``script``."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; form-action 'self'; base-uri 'none'"
    )


def json_script(element_id: str, data: Any) -> str:
    """``data`` as a JSON data block that no stored text can close or turn into markup."""
    text = json.dumps(data, ensure_ascii=False, default=str)
    # no "</script>" or "<!--" can close or bend the element
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def page(title: str, body: str, *, script: str | None = None, body_attrs: str = "") -> str:
    """A whole HTML document with the shared style and, optionally, one inline script."""
    js = asset(script) if script else ""
    csp = policy_for(js)
    tail = f"<script>{js}</script>" if js else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{asset('view.css')}</style></head>"
        f"<body{body_attrs}>{body}{tail}</body></html>\n"
    )


def content_security_policy(html_text: str) -> str | None:
    """The policy a page carries in its meta tag (for a server to send as a header too)."""
    marker = 'http-equiv="Content-Security-Policy" content="'
    start = html_text.find(marker)
    if start < 0:
        return None
    start += len(marker)
    return html.unescape(html_text[start : html_text.index('"', start)])


# -- pieces ---------------------------------------------------------------------------------------
def pretty_json(text: str) -> tuple[str, str | None]:
    """``text``, pretty-printed when it is a JSON object or array; and then its one-line form."""
    stripped = text.strip()
    if stripped[:1] in {"{", "["}:
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            return text, None
        return json.dumps(value, indent=2, ensure_ascii=False), json.dumps(
            value, ensure_ascii=False
        )
    return text, None


def block(label: str, text: str, css: str, *, pretty: bool = True) -> str:
    """A labelled text block, folded behind its first line when long."""
    body, line = pretty_json(text) if pretty else (text, None)
    cls = f"block {css}{' json' if line is not None else ''}"
    head = f'<span class="lbl">{esc(label)}</span>' if label else ""
    if len(body) <= FOLD_CHARS and body.count("\n") < FOLD_LINES:
        return f'<div class="{cls}">{head}<pre>{esc(body)}</pre></div>'
    first = line or (body.strip().splitlines()[0] if body.strip() else "")
    preview = first[:160] + ("…" if len(first) > 160 or len(body) > len(first) else "")
    return (
        f'<div class="{cls}">{head}<details class="fold"><summary><span class="preview">'
        f'{esc(preview)}</span> <span class="more">({len(body):,} characters, '
        f"{body.count(chr(10)) + 1} lines)</span></summary><pre>{esc(body)}</pre></details></div>"
    )


__all__ = [
    "FOLD_CHARS",
    "FOLD_LINES",
    "asset",
    "block",
    "content_security_policy",
    "esc",
    "json_script",
    "page",
    "policy_for",
    "pretty_json",
]
