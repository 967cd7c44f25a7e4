"""Inline SVG line plots, one value per step (no chart library)."""

from __future__ import annotations

from collections.abc import Sequence

from kb.view.page import esc


def curve(
    values: Sequence[float | None],
    *,
    name: str,
    title: str,
    markers: Sequence[tuple[int, str, str]] = (),
    threshold: float | None = None,
) -> str:
    """An inline SVG line plot of one value per step, with vertical markers
    (``(step, css class, label)``) and a cursor the page's script moves to the focused step."""
    width, height, left, right, top, bottom = 360, 120, 34, 10, 10, 24
    n = len(values)
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low = min(0.0, *known)
    high = max(*known, threshold if threshold is not None else low, low + 1e-9)
    if high - low < 1e-9:
        high = low + 1.0
    span = width - left - right
    dx = span / (n - 1) if n > 1 else 0.0

    def x(i: int) -> float:
        return left + (i * dx if n > 1 else span / 2)

    def y(v: float) -> float:
        return top + (1 - (v - low) / (high - low)) * (height - top - bottom)

    base = y(low)
    out = [
        f'<svg class="curve" id="curve-{name}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{esc(title)}" data-x0="{left}" data-dx="{dx:.4f}" data-n="{n}">'
        f"<title>{esc(title)}</title>",
        f'<line class="axis" x1="{left}" y1="{base:.1f}" x2="{width - right}" y2="{base:.1f}"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{base:.1f}"/>',
        f'<text class="tick" x="{left - 4}" y="{top + 4}" text-anchor="end">{high:.2g}</text>',
        f'<text class="tick" x="{left - 4}" y="{base:.1f}" text-anchor="end">{low:.2g}</text>',
        f'<text class="tick" x="{left}" y="{height - 6}">0</text>',
        f'<text class="tick" x="{width - right}" y="{height - 6}" text-anchor="end">'
        f"step {n - 1}</text>",
    ]
    if threshold is not None:
        ty = y(threshold)
        out.append(
            f'<line class="threshold" x1="{left}" y1="{ty:.1f}" x2="{width - right}" '
            f'y2="{ty:.1f}"><title>threshold {threshold:g}</title></line>'
        )
    for step, css, label in markers:
        if 0 <= step < n:
            out.append(
                f'<line class="marker {css}" x1="{x(step):.1f}" y1="{top}" x2="{x(step):.1f}" '
                f'y2="{base:.1f}"><title>{esc(label)}</title></line>'
            )
    segments: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            segments.append([])
        else:
            segments[-1].append(f"{x(i):.1f},{y(v):.1f}")
    out += [f'<polyline class="line" points="{" ".join(s)}"/>' for s in segments if len(s) > 1]
    out.append(
        f'<line class="cursor" x1="{left}" y1="{top}" x2="{left}" y2="{base:.1f}" '
        'visibility="hidden"/>'
    )
    out += [
        f'<circle class="pt" cx="{x(i):.1f}" cy="{y(v):.1f}" r="{2.5 if n <= 80 else 1.5}" '
        f'data-step="{i}"><title>step {i}: {v:.3f}</title></circle>'
        for i, v in enumerate(values)
        if v is not None
    ]
    out.append("</svg>")
    return "".join(out)


__all__ = ["curve"]
