"""What a run page and a listing page show: plain pydantic models, gathered by
:class:`kb.services.view.Viewer` and rendered by :mod:`kb.view.render`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from kb.models import Attribution, Experience, utcnow

RowOp = Literal["same", "args", "error", "changed", "only_left", "only_right"]
"""How one aligned row compares: the same action; the same tool with other arguments (same task
only); the same action where one side failed; different actions; a step only this run took; a step
only the success took."""


class AlignedRow(BaseModel):
    """One row of a step-by-step alignment: a step of this run beside a step of the success."""

    left: int | None = Field(None, description="step index in this run")
    right: int | None = Field(None, description="step index in the successful run")
    op: RowOp


class Alignment(BaseModel):
    """This run aligned with a successful run of the same or a similar task."""

    success: Experience
    same_task: bool = Field(description="the same source task (or task text), not a similar one")
    similarity: float = Field(description="difflib ratio of the two step signatures, 0..1")
    rows: list[AlignedRow]
    divergence: int | None = Field(None, description="index of the first row that differs")

    def divergence_row(self) -> AlignedRow | None:
        return self.rows[self.divergence] if self.divergence is not None else None

    def counterpart(self, step: int) -> AlignedRow | None:
        """The row holding step ``step`` of this run."""
        return next((r for r in self.rows if r.left == step), None)


class Neighbour(BaseModel):
    """A linked item: a repair, a repaired failure, a skill derived from the run."""

    id: str
    relation: str = Field(description="repaired_by | repairs | derived skill")
    title: str
    outcome: str | None = None
    status: str | None = None


class RunView(BaseModel):
    """Everything the run page shows."""

    experience: Experience
    tracer: Attribution | None = Field(None, description="the tracer's attribution")
    label: Attribution | None = Field(None, description="a person's label (method 'label')")
    scores: list[float | None] = Field(
        default_factory=list, description="the tracer's score of each step (None: not scored)"
    )
    risk: list[float | None] | None = Field(None, description="session risk after each step")
    risk_threshold: float | None = None
    nearest: Alignment | None = None
    repairs: list[Neighbour] = Field(default_factory=list)
    skills: list[Neighbour] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="what could not be shown, and why")
    generated_at: datetime = Field(default_factory=utcnow)

    @property
    def blamed(self) -> Attribution | None:
        """The attribution whose step is highlighted: the tracer's, else the label."""
        return self.tracer or self.label

    @property
    def blamed_step(self) -> int | None:
        blamed = self.blamed
        return blamed.step if blamed is not None else None


class ListItem(BaseModel):
    """One row of the listing page."""

    id: str
    task: str
    outcome: str
    domain: str | None = None
    agent: str | None = None
    steps: int = 0
    blamed_agent: str | None = None
    blamed_step: int | None = None
    method: str | None = None
    labelled: bool = False
    label_step: int | None = Field(None, description="the labelled step, beside the tracer's")
    created_at: datetime | None = None


__all__ = ["AlignedRow", "Alignment", "ListItem", "Neighbour", "RowOp", "RunView"]
