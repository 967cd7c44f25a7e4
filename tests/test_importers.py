"""Importers: native JSON/JSONL, OpenAI chat trajectories (tau-bench too), multi-agent logs, and
what a bad record does to a file.

Conversion is checked on its own (no store); importing into a store uses the real model, since an
import is only done when what came in can be found again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kb.errors import ImportFailed, Invalid
from kb.importers import detect, from_multiagent, from_openai, iter_experiences, to_experience
from kb.models import ExperienceCreate
from kb.service import KnowledgeBase
from tests.conftest import requires_data

CHAT = [
    {"role": "system", "content": "You are a support agent."},
    {"role": "user", "content": "My kettle leaks, order #K9. Please replace it."},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_order", "arguments": '{"order_id": "#K9"}'},
            }
        ],
    },
    {
        "role": "tool",
        "tool_call_id": "c1",
        "name": "get_order",
        "content": '{"status": "delivered"}',
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c2",
                "type": "function",
                "function": {"name": "replace_item", "arguments": {"order_id": "#K9"}},
            }
        ],
    },
    {
        "role": "tool",
        "tool_call_id": "c2",
        "name": "replace_item",
        "content": "Error: item out of stock",
    },
    {"role": "assistant", "content": "Sorry, the kettle is out of stock."},
]

TAU = {
    "task_id": 42,
    "reward": 0.0,
    "trial": 1,
    "info": {
        "task": {
            "instruction": "Replace the leaking kettle of order #K9",
            "actions": [{"name": "replace_item", "kwargs": {"order_id": "#K9"}}],
            "outputs": ["replaced"],
        }
    },
    "traj": CHAT,
}

MULTI = {
    "question": "What is 17 * 23?",
    "ground_truth": "391",
    "is_correct": False,
    "id": "q-7",
    "history": [
        {"role": "user", "content": "What is 17 * 23?"},
        {"role": "assistant", "name": "Planner", "content": "Ask the calculator."},
        {"role": "assistant", "name": "Calculator", "content": "17 * 23 = 381"},
        {"role": "assistant", "content": "The answer is 381."},
    ],
}


def _write(path: Path, data: Any, *, jsonl: bool = False) -> Path:
    if jsonl:
        path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    else:
        path.write_text(json.dumps(data), encoding="utf-8")
    return path


# -- conversion --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("record", "fmt"),
    [
        ({"task": "x"}, "native"),
        (CHAT, "openai"),
        ({"messages": CHAT}, "openai"),
        (TAU, "openai"),
        (MULTI, "multiagent"),
        ({"type": "meta", "kb_export": 1}, "kb"),
        ({"something": "else"}, "unknown"),
        ("a string", "unknown"),
    ],
)
def test_detect(record: Any, fmt: str) -> None:
    assert detect(record) == fmt


@pytest.mark.parametrize("shape", ["list", "messages", "tau"])
def test_openai_chat_steps(shape: str) -> None:
    record = {"list": CHAT, "messages": {"messages": CHAT}, "tau": TAU}[shape]
    exp = from_openai(record, source="chat.json")
    assert [s.index for s in exp.steps] == list(range(len(CHAT)))
    assert [s.role for s in exp.steps] == [m["role"] for m in CHAT]
    assert exp.steps[0].role == "system" and exp.steps[0].content == "You are a support agent."
    call, result = exp.steps[2], exp.steps[3]
    assert (call.kind, call.tool, call.args) == ("tool_call", "get_order", {"order_id": "#K9"})
    assert (result.kind, result.tool, result.result) == (
        "observation",
        "get_order",
        '{"status": "delivered"}',
    )
    assert exp.steps[4].args == {"order_id": "#K9"}  # arguments given as an object
    assert exp.steps[5].kind == "error" and exp.steps[5].error == "Error: item out of stock"
    assert exp.final_answer == "Sorry, the kettle is out of stock."
    assert exp.provenance.source == "import" and exp.provenance.imported_from == "chat.json"
    if shape == "tau":
        assert exp.task == "Replace the leaking kettle of order #K9"
        assert exp.outcome == "failure" and exp.score == 0.0
        assert exp.gold_actions == [{"name": "replace_item", "kwargs": {"order_id": "#K9"}}]
        assert exp.ground_truth == "replaced"
        assert exp.provenance.source_id == "42"
        assert exp.artifacts == {"trial": 1}
    else:
        assert exp.task == "My kettle leaks, order #K9. Please replace it."
        assert exp.outcome == "unknown"


def test_tau_reward_one_is_success() -> None:
    assert from_openai({**TAU, "reward": 1.0}, source="s").outcome == "success"


def test_multiagent_log() -> None:
    exp = from_multiagent(MULTI, source="log.json")
    assert exp.task == "What is 17 * 23?"
    assert exp.ground_truth == "391"
    assert exp.outcome == "failure"
    assert [s.index for s in exp.steps] == [0, 1, 2, 3]
    assert [s.agent for s in exp.steps] == ["user", "Planner", "Calculator", "assistant"]
    assert exp.steps[2].content == "17 * 23 = 381"
    assert exp.final_answer == "The answer is 381."
    assert exp.provenance.source_id == "q-7"
    assert from_multiagent({**MULTI, "is_correct": True}, source="s").outcome == "success"
    no_verdict = {k: v for k, v in MULTI.items() if k != "is_correct"}
    assert from_multiagent(no_verdict, source="s").outcome == "unknown"


@pytest.mark.parametrize(
    ("record", "fmt", "words"),
    [
        ({"messages": []}, "openai", "non-empty list"),
        ({"traj": [{"role": "assistant", "content": "hi"}]}, "openai", "no task text"),
        ({"traj": ["not a message"]}, "openai", "message 0"),
        ({"history": []}, "multiagent", "history"),
        ({"history": [{"role": "user", "content": "q"}]}, "multiagent", "question"),
        ({"history": ["x"], "question": "q"}, "multiagent", "history[0]"),
        ({"nothing": 1}, "unknown", "unknown record shape"),
        (["not", "messages"], "openai", "message 0"),
    ],
)
def test_bad_records_say_what_is_wrong(record: Any, fmt: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        to_experience(record, fmt, source="s")


# -- importing into the store ----------------------------------------------------------------
@pytest.mark.parametrize("layout", ["json-list", "jsonl", "single-object"])
def test_native_import(kb: KnowledgeBase, tmp_path: Path, layout: str) -> None:
    records = [
        {"task": "Refill the printer paper", "outcome": "success", "tags": ["office"]},
        {"task": "Water the ficus", "outcome": "failure", "lessons": ["not on Mondays"]},
    ]
    if layout == "single-object":
        records = records[:1]
        path = _write(tmp_path / "one.json", records[0])
    else:
        path = _write(tmp_path / f"many.{layout.split('-')[0]}", records, jsonl=layout == "jsonl")
    report = kb.import_file(path)
    assert report.format == "native"
    assert len(report.added) == len(records) and report.skipped == []
    for item_id, record in zip(report.added, records, strict=True):
        stored = kb.get_experience(item_id)
        assert stored.task == record["task"]
        assert stored.provenance.source == "import"
        assert stored.provenance.imported_from == str(path)
    assert kb.search("paper for the printer", mode="vector")[0].id == report.added[0]


def test_chat_and_multiagent_import(kb: KnowledgeBase, tmp_path: Path) -> None:
    tau = kb.import_file(
        _write(tmp_path / "tau.json", [TAU, {**TAU, "task_id": 43, "reward": 1.0}])
    )
    assert tau.format == "openai"
    assert [kb.get_experience(i).outcome for i in tau.added] == ["failure", "success"]
    chat = kb.import_file(_write(tmp_path / "chat.json", CHAT), domain="kitchen")
    assert kb.get_experience(chat.added[0]).domain == "kitchen"
    multi = kb.import_file(_write(tmp_path / "multi.jsonl", [MULTI], jsonl=True))
    assert multi.format == "multiagent"
    stored = kb.get_experience(multi.added[0])
    assert [s.agent for s in stored.steps] == ["user", "Planner", "Calculator", "assistant"]
    assert kb.search("multiplication of two numbers", mode="vector")[0].id == multi.added[0]
    replaced = kb.get_experience(tau.added[0])
    assert replaced.signature == ["get_order", "replace_item"]


@pytest.mark.parametrize("jsonl", [False, True])
def test_bad_record_aborts_the_whole_file(kb: KnowledgeBase, tmp_path: Path, jsonl: bool) -> None:
    records = [{"task": "fine"}, {"task": "also fine"}, {"task": "bad", "score": 9}, {"task": "ok"}]
    path = _write(tmp_path / ("bad.jsonl" if jsonl else "bad.json"), records, jsonl=jsonl)
    with pytest.raises(ImportFailed) as info:
        kb.import_file(path)
    message = str(info.value)
    assert str(path) in message
    assert "record 3" in message
    assert "score" in message
    assert "nothing from this file was imported" in message
    assert kb.stats().experiences == 0


def test_skip_invalid_imports_the_rest_and_reports(kb: KnowledgeBase, tmp_path: Path) -> None:
    records = [{"task": "fine"}, {"outcome": "success"}, {"task": "also fine"}, {"messages": []}]
    path = _write(tmp_path / "mixed.json", records)
    report = kb.import_file(path, skip_invalid=True)
    assert [kb.get_experience(i).task for i in report.added] == ["fine", "also fine"]
    assert [s["record"] for s in report.skipped] == ["2", "4"]
    assert "task" in report.skipped[0]["error"]
    assert str(path) in report.skipped[1]["error"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"task": ', "not valid JSON"),
        ('{"task": "a"}\n{oops}\n', "line 2 is not valid JSON"),
    ],
)
def test_malformed_file(fake_kb: KnowledgeBase, tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ImportFailed, match=words) as info:
        fake_kb.import_file(path)
    assert str(path) in str(info.value)


def test_missing_file_and_bad_format(fake_kb: KnowledgeBase, tmp_path: Path) -> None:
    with pytest.raises(ImportFailed, match="no such file"):
        fake_kb.import_file(tmp_path / "absent.json")
    path = _write(tmp_path / "ok.json", [{"task": "x"}])
    with pytest.raises(Invalid, match="format must be one of"):
        fake_kb.import_file(path, "csv")
    assert fake_kb.import_file(_write(tmp_path / "empty.json", [])).added == []


# -- the real tau-bench trajectories -------------------------------------------------------------
TAU_SETS = [("tau-retail", 100, 73, 27), ("tau-airline", 200, 84, 116)]


@pytest.mark.parametrize(("name", "total", "successes", "failures"), TAU_SETS)
def test_tau_trajectories_convert_faithfully(
    name: str, total: int, successes: int, failures: int
) -> None:
    path = requires_data(name, "trajectories.json")
    raw = json.loads(path.read_text(encoding="utf-8"))
    converted = list(iter_experiences(path))
    assert len(converted) == len(raw) == total
    experiences: list[ExperienceCreate] = []
    for (_number, exp), record in zip(converted, raw, strict=True):
        assert isinstance(exp, ExperienceCreate), exp
        experiences.append(exp)
        messages = record["traj"]
        assert [s.index for s in exp.steps] == list(range(len(messages)))
        assert exp.steps[0].role == "system"
        for step, message in zip(exp.steps, messages, strict=True):
            assert step.role == message["role"]
            if message["role"] == "assistant" and message.get("tool_calls"):
                function = message["tool_calls"][0]["function"]
                assert step.tool == function["name"]
                assert step.args == json.loads(function["arguments"])
            elif message["role"] == "tool":
                assert step.tool == message["name"]
                assert step.result == message["content"]
        assert exp.gold_actions == (record["info"]["task"]["actions"] or None)
        assert exp.provenance.source_id == str(record["task_id"])
        assert exp.task == record["info"]["task"]["instruction"]
    outcomes = [e.outcome.value for e in experiences]
    assert (outcomes.count("success"), outcomes.count("failure")) == (successes, failures)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "total", "successes", "failures"), TAU_SETS)
def test_tau_trajectories_import_whole(
    kb: KnowledgeBase, name: str, total: int, successes: int, failures: int
) -> None:
    path = requires_data(name, "trajectories.json")
    report = kb.import_file(path)
    assert len(report.added) == total and report.skipped == []
    stats = kb.stats()
    assert stats.experiences == total
    assert stats.experiences_by_outcome == {"success": successes, "failure": failures}
    assert stats.pending_index == 0
    raw = json.loads(path.read_text(encoding="utf-8"))
    first = kb.get_experience(report.added[0])
    assert len(first.steps) == len(raw[0]["traj"])
    assert first.signature == [
        m["tool_calls"][0]["function"]["name"]
        for m in raw[0]["traj"]
        if m["role"] == "assistant" and m.get("tool_calls")
    ]
    query = raw[5]["info"]["task"]["instruction"]
    hits = kb.search(query, k=5, mode="vector")
    assert str(raw[5]["task_id"]) in {
        (h.provenance.source_id if h.provenance else None) for h in hits
    }


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (
            [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}],
            "part one\npart two",
        ),
        ("[{'type': 'text', 'text': 'stringified part'}]", "stringified part"),
        ('{"status": "delivered"}', '{"status": "delivered"}'),
        ('["a", "b"]', '["a", "b"]'),
        ("None", None),
        ("plain words", "plain words"),
    ],
)
def test_message_content_shapes(content: Any, text: str | None) -> None:
    exp = from_openai(
        [{"role": "user", "content": "task"}, {"role": "tool", "name": "t", "content": content}],
        source="s",
    )
    assert exp.steps[1].result == text
