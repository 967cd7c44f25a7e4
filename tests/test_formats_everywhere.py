"""Every importable trace format is accepted wherever a trajectory is: import (idempotently),
``refine`` and ``trace``; long step contents are kept whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kb.errors import KBError
from kb.importers import read_records
from kb.service import KnowledgeBase
from tests.conftest import DATA

TRACES = DATA / "traces"
SAMPLES = sorted(p for p in TRACES.rglob("*") if p.suffix in {".json", ".jsonl", ".traj"})


def _samples() -> list[Path]:
    if not SAMPLES:
        pytest.skip(f"{TRACES} not present (third-party data lives in ../shared/data)")
    return SAMPLES


@pytest.mark.slow
def test_every_sample_imports_and_importing_again_adds_nothing(kb: KnowledgeBase) -> None:
    imported = 0
    for path in _samples():
        first = kb.import_file(path, skip_invalid=True)
        again = kb.import_file(path, skip_invalid=True)
        assert again.added == [] and sorted(again.unchanged) == sorted(first.added), path.name
        imported += len(first.added)
    assert imported >= 38  # the counts per format are in tests/test_importers_formats.py


@pytest.mark.parametrize(
    "name",
    [
        "tool_runner_sequential_tool_use.e075a6c2.json",
        "run_state_v1_13_pending_tool_approval.json",
        "runtime_trajs_basic.json",
        "otel_genai_client_span_tool_calls.json",
        "langsmith_py_wrap_openai_.json",
        "swe-agent__test-repo-i1.traj",
    ],
)
def test_refine_and_trace_take_raw_trajectories_of_every_format(
    fake_kb: KnowledgeBase, name: str
) -> None:
    paths = [p for p in _samples() if p.name == name]
    if not paths:
        pytest.skip(f"{name} not present")
    raw = read_records(paths[0])[0]
    bundle = fake_kb.refine("continue this run", raw)
    assert bundle.state
    attribution = fake_kb.trace(raw, method="heuristic", store=False)
    assert attribution.method == "heuristic"


def test_raw_tau_messages_with_extra_keys_are_accepted(fake_kb: KnowledgeBase) -> None:
    path = DATA / "tau-retail" / "trajectories.json"
    if not path.exists():
        pytest.skip(f"{path} not present")
    messages = json.loads(path.read_text())[0]["traj"]
    assert any("refusal" in m or "annotations" in m for m in messages) or messages
    assert fake_kb.refine("exchange a keyboard", messages[:6]).state
    assert fake_kb.trace(messages, method="heuristic", store=False).step is not None


def test_unknown_shapes_are_refused_with_the_near_miss(fake_kb: KnowledgeBase) -> None:
    with pytest.raises(KBError, match="unknown record shape"):
        fake_kb.refine("x", {"colour": "blue", "size": 3})
    with pytest.raises(KBError, match="unknown record shape"):
        fake_kb.trace({"colour": "blue"}, store=False)


def test_long_steps_are_kept_whole_and_oversized_ones_refused(
    fake_kb: KnowledgeBase, tmp_path: Path
) -> None:
    page = "<html>" + "listing line\n" * 40_000 + "Traceback: boom</html>"  # ~520k characters
    record = {
        "task": "read the page",
        "outcome": "failure",
        "steps": [{"role": "tool", "kind": "observation", "tool": "fetch", "content": page}],
    }
    path = tmp_path / "long.json"
    path.write_text(json.dumps(record))
    (item,) = fake_kb.import_file(path).added
    assert fake_kb.get_experience(item).steps[0].content == page
    too_long = {**record, "steps": [{"role": "tool", "content": "x" * 1_000_001}]}
    with pytest.raises(KBError, match="1000000"):
        fake_kb.add_experience(too_long)
