"""Every write exact: one transaction per operation (checked by killing the process at named
points), namespaces as a hard boundary, idempotent imports and adds, exact multi-file reports,
history instead of overwrite, and user mistakes as one-line errors with nothing stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kb.cli import app
from kb.embeddings import HashEmbedder
from kb.errors import Invalid, KBError, NotFound
from kb.models import SkillStatus
from kb.service import KnowledgeBase
from kb.store import CRASH_POINTS, GroupCommit
from tests.conftest import requires_data

ROOT = Path(__file__).resolve().parent.parent
ADD = {
    "name": "add-numbers",
    "description": "Add two numbers.",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
    "program": "def run(a, b):\n    return a + b\n",
    "tests": [{"name": "adds", "params": {"a": 2, "b": 3}, "expect": 5}],
}
GUIDED = {"name": "greet-customer", "description": "Greet the customer by name."}


def open_kb(path: Path, namespace: str = "default") -> KnowledgeBase:
    return KnowledgeBase.open(path, namespace=namespace, embedder=HashEmbedder())


def exp(task: str, outcome: str = "success", **extra: Any) -> dict[str, Any]:
    steps = [{"role": "assistant", "kind": "tool_call", "tool": "lookup", "args": {"q": task}}]
    return {"task": task, "outcome": outcome, "steps": steps, **extra}


# -- crash at named points -------------------------------------------------------------------------
def _setup(path: Path) -> dict[str, Any]:
    with open_kb(path) as kb:
        ids = [
            r.id for r in kb.add_experiences([exp("find the order"), exp("refund it", "failure")])
        ]
        kb.add_skill(ADD)
        kb.add_skill(GUIDED)
        kb.add_skill({**GUIDED, "name": "greet-client", "description": "Greet the client by name."})
        kb.approve_skill("greet-client")
    batch = path.parent / "batch.jsonl"
    batch.write_text("\n".join(json.dumps(exp(f"imported task {i}")) for i in range(30)))
    return {"ok": ids[0], "failed": ids[1], "batch": str(batch)}


def _observe(kb: KnowledgeBase, ids: dict[str, Any]) -> dict[str, Any]:
    kb.repair()  # what the next process does on first use
    failed = kb.get_experience(ids["failed"])
    skills = {s.name: s for s in kb.list_skills()}
    return {
        "experiences": kb.stats().experiences,
        "versions": len(kb.experience_history(ids["ok"])),
        "label": failed.attribution.step if failed.attribution else None,
        "uses": kb.experience_history(ids["ok"])[-1].uses,
        "deleted": kb.experience_history(ids["ok"])[-1].deleted_at is not None,
        "statuses": {n: s.status.value for n, s in sorted(skills.items())},
        "skill_versions": len(kb.skill_history("add-numbers")),
        "runs": len(kb.skill_history("add-numbers")[-1].validations),
        "events": kb.stats().events,
        "edges": kb.stats().edges,
        "pending": kb.stats().pending_index,
        "searchable": sorted(
            h.title for h in kb.search("order", k=50, kind="experience", diverse=False)
        ),
    }


OPERATIONS: dict[str, str] = {
    "add": "kb.add_experience({'task': 'a brand new task', 'outcome': 'success'})",
    "update": "kb.update_experience(ids['ok'], {'strategy': 'look it up first'})",
    "delete": "kb.delete_experience(ids['ok'])",
    "import": "kb.import_file(ids['batch'])",
    "validate": "kb.validate_skill('add-numbers', limits=RunLimits(unsafe_no_isolation=True))",
    "approve": "kb.approve_skill('greet-customer')",
    "new_version": "kb.update_skill('add-numbers', {'description': 'Add two numbers, exactly.'})",
    "deprecate": "kb.deprecate_skill('greet-client', reason='old')",
    "merge": "kb.merge_skills(threshold=-1.0)",
    "prune": "kb.prune_skills(max_idle_days=-1)",
    "label": "kb.label(ids['failed'], step=0, reason='wrong lookup')",
    "feedback": "kb.feedback(ids['ok'], success=True)",
}
SCRIPT = """
import json, sys
from kb.embeddings import HashEmbedder
from kb.service import KnowledgeBase
from skills import RunLimits
ids = json.loads(sys.argv[2])
with KnowledgeBase.open(sys.argv[1], embedder=HashEmbedder()) as kb:
    {op}
"""


@pytest.mark.slow
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_a_crash_at_any_point_leaves_the_whole_operation_or_none(
    tmp_path: Path, operation: str
) -> None:
    base = tmp_path / "base"
    ids = _setup(base / "store")
    with open_kb(base / "store") as kb:
        before = _observe(kb, ids)
    outcomes: dict[str, dict[str, Any]] = {}
    # mid_batch differs from after_commit only for writes of several index batches (an import)
    points = CRASH_POINTS if operation == "import" else ("before_commit", "after_commit")
    for point in (*points, None):
        run = tmp_path / (point or "done")
        subprocess.run(["cp", "-r", str(base), str(run)], check=True)
        env = {**os.environ, "KB_CRASH_AT": point or ""}
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                SCRIPT.format(op=OPERATIONS[operation]),
                str(run / "store"),
                json.dumps(ids),
            ],
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        if point is None:
            assert done.returncode == 0, done.stderr
        with open_kb(run / "store") as kb:
            outcomes[point or "done"] = _observe(kb, ids)
    after = outcomes["done"]
    assert after != before, f"{operation} changed nothing"
    for point, state in outcomes.items():
        assert state in (before, after), (
            f"{operation} killed at {point}: a half-written state",
            {k: (v, before[k], after[k]) for k, v in state.items() if v != after[k]},
        )
    # a crash inside the transaction loses it; a crash after the commit keeps all of it
    if outcomes["before_commit"] != before:
        pytest.fail(f"{operation}: killed before its commit, yet something was stored")
    assert outcomes["after_commit"] == after, f"{operation}: committed, yet not whole after a crash"


# -- namespaces ------------------------------------------------------------------------------------
@pytest.mark.engines
def test_importing_a_namespace_export_elsewhere_copies_and_leaves_it_untouched(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    with open_kb(store, "A") as a:
        ids = [r.id for r in a.add_experiences([exp("alpha task"), exp("beta task")])]
        a.add_edge(ids[0], ids[1], "similar_to")
        a.export(tmp_path / "a.jsonl")
        before = a.stats()
    with open_kb(store, "B") as b:
        first = b.import_file(tmp_path / "a.jsonl")
        assert len(first.added) == 2 and not set(first.added) & set(ids)
        copies = b.list_experiences()
        assert {c.provenance.source_key for c in copies} == {f"kb:{i}" for i in ids}
        again = b.import_file(tmp_path / "a.jsonl")
        assert again.added == [] and sorted(again.unchanged) == sorted(first.added)
        assert b.stats().edges == 1
        assert b.doctor().ok
    with open_kb(store, "A") as a:
        assert a.stats() == before  # A's records did not move, change or double
        assert {e.id for e in a.list_experiences()} == set(ids)
        with pytest.raises(NotFound):
            a.get_experience(first.added[0])


@pytest.mark.engines
def test_no_write_of_b_reaches_a(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with open_kb(store, "A") as a:
        victim = a.add_experience(exp("secret of A")).id
        strategy = a.get_experience(victim).strategy  # distilled from the run at add
        assert strategy is not None and strategy != "overwritten"
    with open_kb(store, "B") as b:
        for attempt in (
            lambda: b.update_experience(victim, {"strategy": "overwritten"}),
            lambda: b.delete_experience(victim),
            lambda: b.feedback(victim, success=False),
            lambda: b.label(victim, step=0),
            lambda: b.add_edge(victim, victim, "similar_to"),
        ):
            with pytest.raises(NotFound):
                attempt()
    with open_kb(store, "A") as a:
        kept = a.get_experience(victim)
        assert (kept.strategy, kept.uses, kept.version, kept.attribution) == (strategy, 0, 1, None)


# -- idempotency -----------------------------------------------------------------------------------
@pytest.mark.slow  # a real data set imported three times, one import killed
def test_tau_airline_imported_twice_and_killed_then_retried_leaves_200(tmp_path: Path) -> None:
    data = requires_data("tau-airline", "trajectories.json")
    with open_kb(tmp_path / "twice") as kb:
        first = kb.import_file(data)
        second = kb.import_file(data)
        assert (len(first.added), len(second.added), len(second.unchanged)) == (200, 0, 200)
        assert kb.stats().experiences == 200
    for point in CRASH_POINTS:
        store = tmp_path / point
        killed = subprocess.run(
            [
                sys.executable,
                "-c",
                SCRIPT.format(op="kb.import_file(ids['batch'])"),
                str(store),
                json.dumps({"batch": str(data)}),
            ],
            env={**os.environ, "KB_CRASH_AT": point},
            capture_output=True,
            cwd=ROOT,
            timeout=300,
        )
        assert killed.returncode == -9, killed.stderr
        with open_kb(store) as kb:
            kb.import_file(data)
            assert kb.stats().experiences == 200, point


@pytest.mark.engines
def test_add_experience_with_an_idempotency_key_stores_once(tmp_path: Path) -> None:
    with open_kb(tmp_path / "s") as kb:
        first = kb.add_experience(exp("record my run"), idempotency_key="run-42")
        retry = kb.add_experience(exp("record my run"), idempotency_key="run-42")
        assert (first.action, retry.action, retry.id) == ("added", "unchanged", first.id)
        assert kb.stats().experiences == 1


@pytest.mark.engines
def test_update_flag_makes_changed_records_new_versions(tmp_path: Path) -> None:
    record = {
        "task_id": "7",
        "trial": 0,
        "reward": 1.0,
        "traj": [
            {"role": "user", "content": "change my flight"},
            {"role": "assistant", "content": "done"},
        ],
    }
    path = tmp_path / "runs.json"
    path.write_text(json.dumps([record]))
    with open_kb(tmp_path / "s") as kb:
        (first,) = kb.import_file(path).added
        record["traj"][1]["content"] = "done, flight moved"
        path.write_text(json.dumps([record]))
        assert kb.import_file(path).unchanged == [first]  # without --update: nothing changes
        assert kb.import_file(path, update=True).updated == [first]
        versions = kb.experience_history(first)
        assert [v.version for v in versions] == [1, 2]
        assert versions[-1].steps[-1].content == "done, flight moved"


# -- exact reports ---------------------------------------------------------------------------------
def test_a_multi_file_import_reports_each_file_and_stores_only_whole_files(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps([exp("good one"), exp("good two")]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([exp("fine"), {"task": ""}]))
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(exp("line one")) + "\n{not json\n")
    runner = CliRunner()
    store = ["--store", str(tmp_path / "s")]
    result = runner.invoke(app, [*store, "import", str(good), str(bad), "--json"])
    assert result.exit_code == 1
    reports = json.loads(result.stdout.splitlines()[0])
    assert [r["path"] for r in reports] == [str(good), str(bad)]
    assert len(reports[0]["added"]) == 2 and "record 2" in reports[1]["error"]
    assert f"stored: {good}" in result.stderr
    with open_kb(tmp_path / "s") as kb:
        assert sorted(e.task for e in kb.list_experiences()) == ["good one", "good two"]
    skipping = runner.invoke(
        app, [*store, "import", str(good), str(bad), str(broken), "--skip-invalid", "--json"]
    )
    assert skipping.exit_code == 0, skipping.output
    reports = json.loads(skipping.stdout)
    assert reports[0]["unchanged"] and len(reports[0]["unchanged"]) == 2
    assert len(reports[1]["added"]) == 1 and len(reports[1]["skipped"]) == 1
    assert len(reports[2]["added"]) == 1 and "line 2" in reports[2]["skipped"][0]["record"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_unreadable_files_are_one_line_errors(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "in.json"
    path.write_bytes(content)
    result = CliRunner().invoke(app, ["--store", str(tmp_path / "s"), "import", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1 and needle in result.stderr


def test_deep_artifacts_and_an_export_to_a_folder_are_clear_errors(tmp_path: Path) -> None:
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(300):
        cursor["x"] = {}
        cursor = cursor["x"]
    with open_kb(tmp_path / "s") as kb:
        with pytest.raises(KBError, match="more than 32 levels deep"):
            kb.add_experience({"task": "deep", "artifacts": deep})
        assert kb.stats().experiences == 0
        folder = tmp_path / "out"
        folder.mkdir()
        with pytest.raises(KBError, match="is a folder"):
            kb.export(folder)
        assert list(folder.iterdir()) == [] and not list(tmp_path.glob("*.tmp"))


# -- history ---------------------------------------------------------------------------------------
@pytest.mark.engines
def test_update_delete_restore_history_and_purge(tmp_path: Path) -> None:
    store = tmp_path / "s"
    with open_kb(store) as kb:
        item = kb.add_experience(exp("rotate the api key", strategy="paste sk-LEAKED-123")).id
        kb.update_experience(item, {"strategy": "use the vault"})
        versions = kb.experience_history(item)
        assert [v.strategy for v in versions] == ["paste sk-LEAKED-123", "use the vault"]
        kb.delete_experience(item)
        assert kb.list_experiences() == [] and kb.search("api key", kind="experience") == []
        with pytest.raises(NotFound, match="kb restore"):
            kb.get_experience(item)
        kb.restore_experience(item)
        assert kb.search("api key", kind="experience")[0].id == item
        kb.delete_experience(item)
        assert kb.purge() == [item]
        with pytest.raises(NotFound):
            kb.experience_history(item)
        assert kb.stats().tombstoned == 0
    leftovers = [p for p in store.rglob("*") if p.is_file() and b"sk-LEAKED-123" in p.read_bytes()]
    assert leftovers == []


def test_a_validated_version_stays_served_until_a_newer_one_validates(tmp_path: Path) -> None:
    from skills import RunLimits

    unsafe = RunLimits(unsafe_no_isolation=True)
    with open_kb(tmp_path / "s") as kb:
        kb.add_skill(ADD)
        kb.validate_skill("add-numbers", limits=unsafe)
        broken = {"program": "def run(a, b):\n    return a - b\n"}
        kb.update_skill("add-numbers", broken)
        assert kb.validate_skill("add-numbers", limits=unsafe).status == "draft"
        (hit,) = kb.search_skills("add two numbers")
        assert (hit.title, hit.record and hit.record["version"]) == ("add-numbers", 1)
        assert kb.run_skill("add-numbers", {"a": 2, "b": 3}, untrusted=True).value == 5
        kb.update_skill("add-numbers", {"program": ADD["program"], "description": "Add them."})
        kb.validate_skill("add-numbers", limits=unsafe)
        (hit,) = kb.search_skills("add two numbers")
        assert hit.record and hit.record["version"] == 3
        assert kb.get_skill("add-numbers").status == SkillStatus.validated


# -- group commit ----------------------------------------------------------------------------------
class GatedEmbedder(HashEmbedder):
    """Holds its first call until released, and counts calls: lets a test line writers up."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def encode(self, texts: Any) -> Any:
        self.calls.append(len(texts))
        if len(self.calls) == 1:
            self.entered.set()
            self.release.wait(30)
        return super().encode(texts)


def test_concurrent_adds_share_one_write_and_each_gets_its_own_answer(tmp_path: Path) -> None:
    gated = GatedEmbedder()
    with KnowledgeBase.open(tmp_path / "store", embedder=gated) as kb:
        kb.store.ready()
        answers: dict[str, Any] = {}

        def add(name: str, record: dict[str, Any], key: str | None = None) -> None:
            try:
                answers[name] = kb.add_experience(record, idempotency_key=key)
            except Exception as exc:
                answers[name] = exc

        first = threading.Thread(target=add, args=("lead", exp("the leading write")))
        first.start()
        assert gated.entered.wait(30)  # the leader is writing; the others queue behind it
        others = (
            [
                threading.Thread(target=add, args=(f"w{n}", exp(f"queued write {n}")))
                for n in range(5)
            ]
            + [
                threading.Thread(target=add, args=(f"k{n}", exp("a retried run"), "run-9"))
                for n in range(2)
            ]
            + [threading.Thread(target=add, args=("bad", {"task": "", "outcome": "success"}))]
        )
        for thread in others:
            thread.start()
        group = kb.store.group(f"experiences:{kb.namespace}")
        deadline = time.monotonic() + 30
        while len(group._queue) < 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        gated.release.set()
        for thread in [first, *others]:
            thread.join(30)
        assert len(gated.calls) == 2  # the leader's write, then one batch for the seven queued
        assert isinstance(answers.pop("bad"), Invalid)  # failed alone, before queueing
        assert {a.action for n, a in answers.items() if n.startswith("k")} == {"added", "unchanged"}
        assert len({a.id for n, a in answers.items() if n.startswith("k")}) == 1
        ids = {a.id for a in answers.values()}
        assert len(ids) == 7  # the lead, five writes and one retried run stored once
        assert {e.id for e in kb.list_experiences(limit=50)} == ids


def test_under_steady_load_each_writer_writes_only_the_batch_holding_its_own_request() -> None:
    """Group commit hands the lead on: a caller writes one batch, the one with its own request,
    and returns; it never goes on writing for callers that queued behind it (under steady load
    that kept one MCP call waiting 48 s)."""
    group = GroupCommit()
    batches: list[tuple[int, list[tuple[int, int]]]] = []

    def write(requests: list[tuple[int, int]]) -> list[tuple[int, int]]:
        batches.append((threading.get_ident(), list(requests)))
        time.sleep(0.002)  # long enough for others to queue behind this write
        return [(owner, n * 10) for owner, n in requests]

    answers: dict[int, list[tuple[int, int]]] = {}

    def writer() -> None:
        me = threading.get_ident()
        answers[me] = [group.submit((me, n), write) for n in range(30)]

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 6
    for me, got in answers.items():
        assert got == [(me, n * 10) for n in range(30)]  # each its own answer, in order
    assert all(me in {owner for owner, _ in batch} for me, batch in batches)
    assert sum(len(batch) for _, batch in batches) == 180
    assert len(batches) < 180  # and writes were shared


@pytest.mark.engines
def test_search_reads_records_without_their_steps_and_nothing_else_missing(
    tmp_path: Path,
) -> None:
    """Search hydrates hits with the database leaving the steps out (SQLite's json_remove,
    PostgreSQL's jsonb minus): every other field comes back as stored."""
    with open_kb(tmp_path / "store") as kb:
        added = kb.add_experience(exp("refund a damaged keyboard", tags=["retail"]))
        stored = kb.get_experience(added.id)
        assert stored.steps
        records = kb.store.records(kb.namespace)
        light = records.get_experiences([stored.id], steps=False)[stored.id]
        assert light.steps == []
        assert light.model_dump(exclude={"steps"}) == stored.model_dump(exclude={"steps"})
        [found] = kb.search("damaged keyboard refund", 1)
        assert found.record == stored.model_dump(mode="json", exclude={"steps"})
