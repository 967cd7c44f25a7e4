"""Session Risk Memory: what a gate session remembers between checks (pure: no store).

The state of one agent run: the task and what it has seen (for provenance), the instruction-like
passages of tool results (with their vectors once embedded), and the temporal risk signal: an
exponential moving average of baseline-subtracted per-action risk, the drift of a semantic
centroid of the run's actions from its anchor (the role's stored actions, else the task), the
identifiers from tool results that went out, and the steps up the privilege ladder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from kb import safety
from kb.models import GateSessionRow

MAX_CORPUS = 400_000
"""Characters of a session's seen text kept for provenance (the task is always kept)."""


class MemoryParams(Protocol):
    """The policy fields the memory uses (``kb.services.gate.GatePolicy`` has them)."""

    decay: float
    baseline: float
    drift_weight: float
    outflow_weight: float
    escalation_weight: float


class SessionMemory:
    """A session's memory between checks (stored as the row's JSON ``state`` and ``corpus``)."""

    def __init__(self) -> None:
        self.role: str | None = None
        self.task: str | None = None
        self.seq = 0
        self.corpus = ""
        self.ids: set[str] = set()
        self.task_ids: set[str] = set()
        self.task_vec: np.ndarray | None = None
        self.segments: list[dict[str, Any]] = []
        self.taint = 0.0
        self.ema = 0.0
        self.centroid: np.ndarray | None = None
        self.anchor: np.ndarray | None = None
        self.drift_base = 0.0
        self.drift_n = 0
        self.session_risk = 0.0
        self.peak = 0.0
        self.outflow: set[str] = set()
        self.level = 0
        self.escalations = 0
        self.parts: dict[str, float] = {}

    @classmethod
    def of(cls, row: GateSessionRow | None, *, role: str | None, task: str | None) -> SessionMemory:
        state = cls()
        if row is not None:
            data = row.state
            state.role, state.task, state.seq, state.corpus = (
                row.role,
                row.task,
                row.seq,
                row.corpus,
            )
            state.ids = set(data.get("ids", []))
            state.task_ids = set(data.get("task_ids", []))
            state.task_vec = _vec(data.get("task_vec"))
            state.segments = list(data.get("segments", []))
            state.taint = float(data.get("taint", 0.0))
            state.ema = float(data.get("ema", 0.0))
            state.centroid = _vec(data.get("centroid"))
            state.anchor = _vec(data.get("anchor"))
            state.drift_base = float(data.get("drift_base", 0.0))
            state.drift_n = int(data.get("drift_n", 0))
            state.session_risk = float(data.get("session_risk", 0.0))
            state.peak = float(data.get("peak", 0.0))
            state.outflow = set(data.get("outflow", []))
            state.level = int(data.get("level", 0))
            state.escalations = int(data.get("escalations", 0))
        if role and not state.role:
            state.role = role
        if task and task != state.task:
            if state.task:
                state.task = f"{state.task}\n{task}"
            else:
                state.task = task
            state.task_vec = None
            state.task_ids |= safety.identifiers(task)
            state.level = max(state.level, safety.privilege_level([task]))
            state.ids |= state.task_ids
            state.corpus = safety.norm(task) + "\n" + state.corpus
        return state

    def observe(self, text: str, where: str) -> None:
        """Take in a tool result: its text and identifiers for provenance, its instructions."""
        self.corpus = _capped(self.corpus + "\n" + safety.norm(text), self.task)
        self.ids |= safety.identifiers(text)
        for seg in safety.instructions(text):
            if seg.score >= 0.5 or seg.cue:
                self.segments.append(
                    {
                        "text": seg.text,
                        "ids": sorted(seg.identifiers)[:50],
                        "score": seg.score,
                        "cue": seg.cue,
                        "where": where,
                        "vec": None,
                    }
                )
                if seg.cue:
                    self.taint = max(self.taint, seg.score)
        self.segments = self.segments[-20:]

    def observe_args(self, args: Mapping[str, Any]) -> None:
        """Values of an allowed call count as seen by the calls after it."""
        for _, value in safety.flat(args):
            if isinstance(value, str):
                self.corpus = _capped(self.corpus + "\n" + safety.norm(value), self.task)
                self.ids |= safety.identifiers(value)

    def remember(
        self,
        risk: float,
        vector: np.ndarray | None,
        role_anchor: np.ndarray | None,
        policy: MemoryParams,
        *,
        sent_out: set[str] = frozenset(),  # type: ignore[assignment]
        level: int = 0,
    ) -> float:
        """Session Risk Memory: the moving average of baseline-subtracted risk, plus the drift of
        the actions' centroid from the session's anchor beyond its own early level, plus what
        accumulates: identifiers from tool results sent out, steps up the privilege ladder."""
        self.ema = policy.decay * self.ema + (1 - policy.decay) * max(0.0, risk - policy.baseline)
        drift = 0.0
        if vector is not None:
            if self.centroid is None:
                self.centroid = vector
            else:
                mixed = 0.7 * self.centroid + 0.3 * vector
                self.centroid = mixed / max(float(np.linalg.norm(mixed)), 1e-9)
            if self.anchor is None:
                base = role_anchor if role_anchor is not None else self.task_vec
                self.anchor = base if base is not None else vector
            raw = 1.0 - float(self.centroid @ self.anchor)
            if self.drift_n < 3:
                self.drift_base = (self.drift_base * self.drift_n + raw) / (self.drift_n + 1)
                self.drift_n += 1
            else:
                drift = max(0.0, raw - self.drift_base - 0.05)
        self.outflow |= sent_out
        if level > self.level:
            self.escalations += 1 if self.level or self.escalations else 0
            self.level = level
        outflow = policy.outflow_weight * min(len(self.outflow), 20)
        escalation = policy.escalation_weight * self.escalations
        self.parts = {
            "ema": round(self.ema, 4),
            "drift": round(drift, 4),
            "outflow": round(outflow, 4),
            "escalation": round(escalation, 4),
        }
        self.session_risk = min(1.0, self.ema + policy.drift_weight * drift + outflow + escalation)
        self.peak = max(self.peak, risk)
        return self.session_risk

    def dump(self) -> dict[str, Any]:
        return {
            "ids": sorted(self.ids)[-5000:],
            "task_ids": sorted(self.task_ids),
            "task_vec": _list(self.task_vec),
            "segments": self.segments,
            "taint": self.taint,
            "ema": round(self.ema, 6),
            "centroid": _list(self.centroid),
            "anchor": _list(self.anchor),
            "drift_base": round(self.drift_base, 6),
            "drift_n": self.drift_n,
            "session_risk": round(self.session_risk, 6),
            "peak": self.peak,
            "outflow": sorted(self.outflow)[:500],
            "level": self.level,
            "escalations": self.escalations,
        }


def _capped(corpus: str, task: str | None) -> str:
    if len(corpus) <= MAX_CORPUS:
        return corpus
    head = safety.norm(task or "")
    return head + "\n" + corpus[-(MAX_CORPUS - len(head) - 1) :]


def _vec(value: Any) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=np.float32)


def _list(value: np.ndarray | None) -> list[float] | None:
    return None if value is None else [round(float(x), 5) for x in value]


__all__ = ["MAX_CORPUS", "MemoryParams", "SessionMemory"]
