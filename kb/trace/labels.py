"""Human failure labels in the ``failure_labels.json`` format (microsoft/AgentRx).

A file is a list of ``{trajectory_id, failures: [{failure_id, step_number, step_reason,
failure_category, failed_agent}], root_cause: {failure_id, reason_for_root_cause},
failure_summary}``. The target of a label is its root-cause failure.

Step convention, checked against the tau-retail trajectories: ``step_number`` is the 0-based index
of the message in the trajectory **plus one**, the system message counted as message 0. Trajectory 2:
step 7 is message 6, the assistant's wrong count ("there are 11 available T-shirt options"; the
ground truth is 10), and step 3 is message 2, the product lookup made before authentication.
Trajectory 47: step 19 is message 18, the premature ``transfer_to_human_agents`` call (message 19 is
its tool result). So ``step = step_number - 1`` indexes :attr:`ExperienceCreate.steps` directly, as
the OpenAI importer keeps one step per message, system message included.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kb.errors import Invalid, NotFound
from kb.models import Attribution


@dataclass(frozen=True)
class FailureLabel:
    """The root-cause failure of one labelled trajectory (plus the other failures it lists)."""

    trajectory_id: str
    step: int
    agent: str | None
    reason: str
    category: str | None = None
    failure_id: int | None = None
    summary: str | None = None
    other_steps: tuple[int, ...] = field(default_factory=tuple)

    def attribution(self) -> Attribution:
        """The label as an :class:`Attribution` (``method="label"``, full confidence)."""
        reason = self.reason
        if self.category:
            reason = f"[{self.category}] {reason}"
        return Attribution(
            agent=self.agent,
            step=self.step,
            reason=reason,
            confidence=1.0,
            method="label",
            corrected=None,
        )


def parse_labels(data: Any) -> list[FailureLabel]:
    """Labels from parsed JSON (a list of label records, or one record)."""
    records = data if isinstance(data, list) else [data]
    out = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, Mapping):
            raise Invalid(f"label record {number}: expected an object")
        out.append(_parse_one(record, number))
    return out


def _parse_one(record: Mapping[str, Any], number: int) -> FailureLabel:
    where = f"label record {number}"
    if "trajectory_id" not in record:
        raise Invalid(f"{where}: trajectory_id is missing")
    failures = record.get("failures")
    if not isinstance(failures, list) or not failures:
        raise Invalid(f"{where}: failures must be a non-empty list")
    by_id: dict[Any, Mapping[str, Any]] = {}
    for item in failures:
        if not isinstance(item, Mapping) or not isinstance(item.get("step_number"), int):
            raise Invalid(f"{where}: every failure needs an integer step_number")
        if item["step_number"] < 1:
            raise Invalid(
                f"{where}: step_number {item['step_number']} is below 1 (it counts from 1)"
            )
        by_id[item.get("failure_id")] = item
    root = record.get("root_cause") or {}
    root_id = root.get("failure_id") if isinstance(root, Mapping) else None
    target: Mapping[str, Any] = by_id.get(root_id) or failures[0]
    others = tuple(
        sorted({int(f["step_number"]) - 1 for f in failures} - {target["step_number"] - 1})
    )
    reason = str(target.get("step_reason") or "")
    if isinstance(root, Mapping) and root.get("reason_for_root_cause"):
        reason = f"{reason} Root cause: {root['reason_for_root_cause']}".strip()
    return FailureLabel(
        trajectory_id=str(record["trajectory_id"]),
        step=int(target["step_number"]) - 1,
        agent=str(target["failed_agent"]) if target.get("failed_agent") else None,
        reason=reason,
        category=target.get("failure_category"),
        failure_id=target.get("failure_id"),
        summary=record.get("failure_summary"),
        other_steps=others,
    )


def read_labels(path: Path | str) -> list[FailureLabel]:
    """Labels from a ``failure_labels.json``-format file."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path}: no such label file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise Invalid(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    return parse_labels(data)


def split_by_trajectory(
    labels: Iterable[FailureLabel], known_ids: Iterable[str]
) -> tuple[list[FailureLabel], list[FailureLabel]]:
    """``(labels whose trajectory is known, labels with no trajectory)``."""
    known = {str(i) for i in known_ids}
    matched: list[FailureLabel] = []
    missing: list[FailureLabel] = []
    for label in labels:
        (matched if label.trajectory_id in known else missing).append(label)
    return matched, missing


def agent_at(steps_agents: list[str | None], label: FailureLabel) -> str | None:
    """The label's agent, falling back to the agent of the labelled step."""
    if label.agent:
        return label.agent
    return steps_agents[label.step] if 0 <= label.step < len(steps_agents) else None
