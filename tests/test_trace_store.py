"""Tracing inside the store: stored attributions on hits, labels, label files, training, repair
edges, preference pairs, and ``kb trace`` on multi-agent log files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kb.cli import app
from kb.errors import Invalid
from kb.service import KnowledgeBase
from tests.conftest import requires_data

WRONG_PRODUCT = [
    {"role": "system", "content": "You are a shop agent."},
    {"role": "user", "content": "Refund order #A1, the kettle leaks."},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_order", "arguments": '{"order_id": "#A1"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "name": "get_order", "content": '{"paid": 25.0}'},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c2",
                "type": "function",
                "function": {"name": "refund", "arguments": '{"order_id": "#A1", "amount": 40.0}'},
            }
        ],
    },
    {
        "role": "tool",
        "tool_call_id": "c2",
        "name": "refund",
        "content": "Error: amount 40.0 exceeds paid 25.0",
    },
    {"role": "assistant", "content": "I could not refund the order."},
]
RIGHT_PRODUCT = [
    *WRONG_PRODUCT[:4],
    {
        **WRONG_PRODUCT[4],
        "tool_calls": [
            {
                "id": "c2",
                "type": "function",
                "function": {"name": "refund", "arguments": '{"order_id": "#A1", "amount": 25.0}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "c2", "name": "refund", "content": '{"status": "ok"}'},
    {"role": "assistant", "content": "Refunded $25."},
]
TEAM_LOG = {
    "question": "What is 17 * 23?",
    "ground_truth": "391",
    "history": [
        {"role": "user", "content": "What is 17 * 23?"},
        {
            "role": "assistant",
            "name": "Planner",
            "content": "Ask the calculator agent to multiply 17 by 23.",
        },
        {"role": "assistant", "name": "Calculator", "content": "17 * 23 = 381"},
        {"role": "assistant", "name": "Verifier", "content": "The result looks right."},
        {"role": "assistant", "name": "Planner", "content": "Final answer: 381"},
    ],
}


def store_pair(kb: KnowledgeBase) -> tuple[str, str]:
    failure = kb.import_file(
        write(kb.path.parent / "f.json", {"task_id": "t1", "reward": 0.0, "traj": WRONG_PRODUCT})
    )
    success = kb.import_file(
        write(kb.path.parent / "s.json", {"task_id": "t1", "reward": 1.0, "traj": RIGHT_PRODUCT})
    )
    return failure.added[0], success.added[0]


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_trace_stores_attribution_links_repair_and_shows_on_hits(kb: KnowledgeBase) -> None:
    failure_id, success_id = store_pair(kb)
    attribution = kb.trace(failure_id, method="heuristic")
    assert attribution.step == 4 and attribution.agent == "assistant"  # the refund call with 40.0
    assert len(attribution.step_scores) == len(kb.get_experience(failure_id).steps)
    assert kb.get_experience(failure_id).attribution == attribution
    assert [(e.src, e.dst) for e in kb.edges(failure_id, kinds={"repaired_by"})] == [
        (failure_id, success_id)
    ]
    (hit,) = kb.search("refund a leaking kettle", kind="experience", outcome="failure")
    assert hit.attribution is not None and hit.attribution.step == 4


def test_pairs_export_has_wrong_and_corrected_step(kb: KnowledgeBase, tmp_path: Path) -> None:
    failure_id, _ = store_pair(kb)
    kb.trace(failure_id, method="heuristic")
    result = kb.export(tmp_path / "pairs.jsonl", format="pairs")
    (pair,) = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert result.pairs == 1 and pair["failure_id"] == failure_id
    assert "40.0" in pair["wrong_step"] and "25.0" in pair["corrected_step"]
    assert pair["task"] and pair["context"]


def test_labels_are_kept_and_train_the_tracer(fake_kb: KnowledgeBase) -> None:
    ids = []
    for i in range(4):
        steps = [dict(m) for m in WRONG_PRODUCT]
        steps[1] = {"role": "user", "content": f"Refund order #A{i}, the kettle leaks."}
        ids.append(
            fake_kb.import_file(
                write(
                    fake_kb.path.parent / f"x{i}.json",
                    {"task_id": f"x{i}", "reward": 0.0, "traj": steps},
                )
            ).added[0]
        )
    with pytest.raises(Invalid, match="step must be between 0 and 6"):
        fake_kb.label(ids[0], step=99)
    for exp_id in ids:
        fake_kb.label(exp_id, step=4, reason="refunded more than was paid")
    fake_kb.trace(ids[0], method="heuristic")
    assert (
        fake_kb.get_experience(ids[0]).attribution.method == "label"
    )  # a label is never overwritten
    result = fake_kb.train_tracer()
    assert result.labels == 4 and result.synthetic == 0 and Path(result.path).exists()
    assert result.base is not None  # the shipped model, fine-tuned on the store's labels
    assert fake_kb.trace(ids[1], store=False).method == "learned"  # auto now uses the store's model


def test_label_file_import_on_real_data(fake_kb: KnowledgeBase) -> None:
    trajectories = requires_data("tau-retail", "trajectories.json")
    fake_kb.import_file(trajectories)
    report = fake_kb.import_file(trajectories.parent / "failure_labels.json")
    assert len(report.labelled) == 27 and sorted(report.missing) == ["104", "105"]
    (exp,) = fake_kb.store.records(fake_kb.namespace).by_source_id("2")
    assert exp.attribution is not None and exp.attribution.step == 6  # step_number 7 - 1
    assert "available" in (exp.steps[6].content or "").lower()


def test_llm_method_needs_configuration(fake_kb: KnowledgeBase) -> None:
    with pytest.raises(Invalid, match="method must be one of"):
        fake_kb.trace(TEAM_LOG, method="magic")
    with pytest.raises(Invalid, match="not configured: set KB_LLM_BASE_URL"):
        fake_kb.trace(TEAM_LOG, method="llm")


def test_cli_traces_multi_agent_files_and_folders(tmp_path: Path, embedder: Any) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "a.json", TEAM_LOG)
    write(
        logs / "b.json",
        {
            **TEAM_LOG,
            "question": "What is 6 * 7?",
            "ground_truth": "42",
            "history": [
                {"role": "user", "content": "What is 6 * 7?"},
                {"role": "assistant", "name": "Solver", "content": "6 * 7 = 48"},
                {"role": "assistant", "name": "Reviewer", "content": "Final answer: 48"},
            ],
        },
    )
    (logs / "broken.json").write_text("{not json")
    runner = CliRunner()
    result = runner.invoke(
        app, ["--store", str(tmp_path / "s"), "trace", str(logs), "--json", "--method", "heuristic"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    by_file = {Path(line["file"]).name: line for line in lines}
    assert (
        by_file["a.json"]["mistake_agent"] == "Calculator"
        and by_file["a.json"]["mistake_step"] == 2
    )
    assert by_file["b.json"]["mistake_agent"] == "Solver" and by_file["b.json"]["mistake_step"] == 1
    assert {"reason", "confidence"} <= set(by_file["a.json"])
    assert "error" in by_file["broken.json"]
    single = runner.invoke(app, ["--store", str(tmp_path / "s"), "trace", str(logs / "a.json")])
    assert single.exit_code == 0 and "Calculator" in single.stdout


def test_a_human_label_and_the_tracers_answer_are_both_kept(kb: KnowledgeBase) -> None:
    failure_id, _ = store_pair(kb)
    traced = kb.trace(failure_id, method="heuristic")
    kb.label(failure_id, step=2, agent="assistant", reason="refunded the wrong product")
    stored = kb.get_experience(failure_id)
    assert stored.attribution is not None and stored.attribution.method == "label"
    assert stored.tracer_attribution == traced  # the tracer's earlier answer moved beside it
    again = kb.trace(failure_id, method="heuristic")
    stored = kb.get_experience(failure_id)
    assert stored.attribution.step == 2 and stored.tracer_attribution == again


@pytest.mark.slow
def test_cli_synthesizes_labelled_failures_and_trains_on_them(tmp_path: Path) -> None:
    runner = CliRunner()
    store_dir = str(tmp_path / "s")
    out = tmp_path / "faults.jsonl"
    made = runner.invoke(
        app,
        ["--store", store_dir, "tracer", "synth", str(out), "--team-runs", "3", "--add", "--json"],
    )
    assert made.exit_code == 0, made.output
    report = json.loads(made.stdout)
    assert report["successes"] == 3 and report["failures"] == report["imported"] > 0
    assert report["confirmed"] == {"replay": report["failures"]}  # every team fault replayed
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == report["failures"]
    assert all(line["attribution"]["method"] == "label" for line in lines)
    again = runner.invoke(
        app, ["--store", str(tmp_path / "t"), "tracer", "synth", str(tmp_path / "b.jsonl"),
              "--team-runs", "3", "--json"],
    )  # fmt: skip

    def content(path: Path) -> list[dict[str, Any]]:  # all but the time each record was made
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return [{**r, "provenance": {**r["provenance"], "created_at": None}} for r in rows]

    assert content(tmp_path / "b.jsonl") == content(out)  # seeded: the same failures
    assert again.exit_code == 0
    trained = runner.invoke(app, ["--store", store_dir, "tracer", "train", "--json"])
    assert trained.exit_code == 0, trained.output
    result = json.loads(trained.stdout)
    assert result["labels"] == report["failures"] and Path(result["path"]).is_file()
    bad = runner.invoke(
        app, ["--store", store_dir, "tracer", "synth", str(out), "--faults", "typo"]
    )
    assert bad.exit_code != 0 and "unknown fault types" in bad.output
    assert "Traceback" not in bad.output
    none = runner.invoke(app, ["--store", str(tmp_path / "u"), "tracer", "train"])
    assert none.exit_code != 0 and "label at least 3" in none.output
