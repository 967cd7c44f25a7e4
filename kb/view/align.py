"""Step-by-step alignment of a run with a successful one (difflib over step signatures)."""

from __future__ import annotations

import json
from difflib import SequenceMatcher

from kb.models import Experience, Step
from kb.view.model import AlignedRow, Alignment, RowOp

RESULT_KINDS = frozenset({"observation", "error"})


def step_key(step: Step) -> str:
    """What an aligned step must share with its counterpart: the tool it calls or answers, else
    who speaks and how (``user:message``)."""
    if step.tool:
        return f"{'result' if step.kind in RESULT_KINDS else 'call'}:{step.tool}"
    return f"{step.role or step.agent or '?'}:{step.kind}"


def _args(step: Step) -> str:
    return json.dumps(step.args or {}, sort_keys=True, default=str)


def _failed(step: Step) -> bool:
    return bool(step.error) or step.kind == "error"


def _pair(left: Step, right: Step, *, same_task: bool) -> RowOp:
    if _failed(left) != _failed(right):
        return "error"
    if same_task and left.tool and left.kind not in RESULT_KINDS and _args(left) != _args(right):
        return "args"
    return "same"


def align(run: Experience, success: Experience, *, same_task: bool) -> Alignment:
    """Align the steps of ``run`` with those of ``success``.

    Steps are matched on :func:`step_key` (difflib, no junk heuristic); a matched pair whose
    arguments differ (only compared for the same task, where they should agree) or where only one
    side failed counts as a difference. The divergence is the first row that differs; across
    tasks (``same_task`` false) only rows with a tool step count, since messages differ anyway.
    """
    left = [step_key(s) for s in run.steps]
    right = [step_key(s) for s in success.steps]
    matcher = SequenceMatcher(None, left, right, autojunk=False)
    rows: list[AlignedRow] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows += [
                AlignedRow(
                    left=i,
                    right=j,
                    op=_pair(run.steps[i], success.steps[j], same_task=same_task),
                )
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            ]
            continue
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        rows += [AlignedRow(left=i1 + n, right=j1 + n, op="changed") for n in range(paired)]
        rows += [AlignedRow(left=i, op="only_left") for i in range(i1 + paired, i2)]
        rows += [AlignedRow(right=j, op="only_right") for j in range(j1 + paired, j2)]

    def parts(row: AlignedRow) -> bool:
        if row.op == "same":
            return False
        if same_task:
            return True
        # across tasks the words differ anyway: only a different action counts
        sides = [run.steps[row.left] if row.left is not None else None]
        sides.append(success.steps[row.right] if row.right is not None else None)
        return any(step is not None and step.tool for step in sides)

    divergence = next((n for n, row in enumerate(rows) if parts(row)), None)
    return Alignment(
        success=success,
        same_task=same_task,
        similarity=round(matcher.ratio(), 4),
        rows=rows,
        divergence=divergence,
    )


__all__ = ["align", "step_key"]
