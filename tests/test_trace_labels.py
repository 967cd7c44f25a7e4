"""Failure labels in the failure_labels.json format, checked on the real tau-retail file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kb.errors import Invalid
from kb.importers import iter_experiences
from kb.trace.labels import parse_labels, read_labels, split_by_trajectory

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tau-retail"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent")


@needs_data
def test_real_labels_and_the_step_convention() -> None:
    labels = read_labels(DATA / "failure_labels.json")
    assert len(labels) == 29
    experiences = {
        e.provenance.source_id: e for _, e in iter_experiences(DATA / "trajectories.json")
    }
    matched, missing = split_by_trajectory(labels, experiences)
    assert sorted(label.trajectory_id for label in missing) == ["104", "105"]
    assert len(matched) == 27
    by_id = {label.trajectory_id: label for label in labels}
    # trajectory 2: step_number 7 is message 6, the wrong count of t-shirts
    two = by_id["2"]
    assert two.step == 6 and two.agent == "Assistant" and two.other_steps == (2,)
    assert "11" in (experiences["2"].steps[6].content or "")
    # trajectory 47: step_number 19 is message 18, the premature transfer to a human
    forty_seven = by_id["47"]
    assert forty_seven.step == 18
    assert "transfer" in (experiences["47"].steps[18].tool or "")
    assert forty_seven.attribution().method == "label"
    for label in matched:
        assert label.step < len(experiences[label.trajectory_id].steps)


def test_root_cause_is_the_target(tmp_path: Path) -> None:
    record = {
        "trajectory_id": 7,
        "failures": [
            {"failure_id": 1, "step_number": 3, "step_reason": "a", "failed_agent": "User"},
            {
                "failure_id": 2,
                "step_number": 9,
                "step_reason": "b",
                "failed_agent": "Assistant",
                "failure_category": "Invalid Invocation",
            },
        ],
        "root_cause": {"failure_id": 2, "reason_for_root_cause": "it broke"},
    }
    path = tmp_path / "labels.json"
    path.write_text(json.dumps([record]))
    (label,) = read_labels(path)
    assert (label.trajectory_id, label.step, label.agent) == ("7", 8, "Assistant")
    assert label.category == "Invalid Invocation" and "it broke" in label.reason
    attribution = label.attribution()
    assert attribution.step == 8 and attribution.confidence == 1.0


@pytest.mark.parametrize(
    "bad",
    [
        {"failures": []},
        {"trajectory_id": 1, "failures": []},
        {"trajectory_id": 1, "failures": [{"step_number": 0}]},
    ],
)
def test_bad_labels_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(Invalid):
        parse_labels([bad])
