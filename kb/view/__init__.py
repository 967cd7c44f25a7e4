"""See a run step by step: self-contained HTML pages for people (``kb view``).

:class:`kb.services.view.Viewer` gathers a :class:`RunView`; :func:`render_run` and
:func:`render_list` turn it into one HTML file each, with the style and script inlined from this
package (no server, no network).
"""

from __future__ import annotations

from kb.view.align import align, step_key
from kb.view.listing import render_list, render_login, render_message
from kb.view.model import AlignedRow, Alignment, ListItem, Neighbour, RunView
from kb.view.page import content_security_policy
from kb.view.render import render_run

__all__ = [
    "AlignedRow",
    "Alignment",
    "ListItem",
    "Neighbour",
    "RunView",
    "align",
    "content_security_policy",
    "render_list",
    "render_login",
    "render_message",
    "render_run",
    "step_key",
]
