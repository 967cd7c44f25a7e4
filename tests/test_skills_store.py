"""The skill library inside the store: versions, lifecycle, sandboxed runs, packages, mining,
curation and retrieval ranking, through the SDK and the ``kb skill`` CLI."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from skills_ref import validate as reference_validate
from typer.testing import CliRunner

from kb.cli import app
from kb.embeddings import HashEmbedder
from kb.errors import Conflict, Invalid, NotFound
from kb.models import SkillStatus
from kb.service import KnowledgeBase

ADD = {
    "name": "add-numbers",
    "description": "Add two integers and return their sum.",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
    "returns": {"type": "integer"},
    "program": "def run(a, b):\n    return a + b\n",
    "tests": [{"name": "small", "params": {"a": 1, "b": 2}, "expect": 3}],
    "steps": ["Take a and b.", "Return a + b."],
}


def guided(name: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": description, "steps": ["Do the thing."], **extra}


def test_lifecycle_validate_break_and_history(fake_kb: KnowledgeBase) -> None:
    skill = fake_kb.add_skill(ADD)
    assert skill.status == SkillStatus.draft and skill.mode and skill.mode.value == "executable"
    report = fake_kb.validate_skill("add-numbers")
    assert (report.previous_status, report.status, report.passed) == ("draft", "validated", 1)
    assert fake_kb.get_skill("add-numbers").status == SkillStatus.validated

    broken = dict(ADD["tests"][0], name="wrong", expect=4)
    v2 = fake_kb.update_skill("add-numbers", {"tests": [*ADD["tests"], broken]})
    assert v2.version == 2 and v2.status == SkillStatus.draft
    assert fake_kb.get_skill("add-numbers", 1).status == SkillStatus.validated  # old version kept
    assert any(e.kind == "supersedes" and e.dst == skill.id for e in fake_kb.edges(v2.id))
    fake_kb.update_skill("add-numbers", {"tests": ADD["tests"]})
    fake_kb.validate_skill("add-numbers")
    v4 = fake_kb.update_skill("add-numbers", {"tests": [broken]})
    # a validated skill whose later validation fails becomes broken
    fake_kb.skills._set_status(v4, SkillStatus.validated)  # as if it had validated
    assert fake_kb.validate_skill("add-numbers").status == "broken"
    history = fake_kb.skill_history("add-numbers")
    assert [h.version for h in history] == [1, 2, 3, 4]
    assert history[0].validations[0]["passed"] is True
    assert history[-1].latest and not history[0].latest


def test_guided_skills_are_approved_not_validated(fake_kb: KnowledgeBase) -> None:
    fake_kb.add_skill(guided("ask-for-order-id", "Ask the customer for the order id first."))
    with pytest.raises(Invalid, match="approve it instead"):
        fake_kb.validate_skill("ask-for-order-id")
    assert fake_kb.approve_skill("ask-for-order-id").status == SkillStatus.approved
    with pytest.raises(Invalid):
        fake_kb.approve_skill("ask-for-order-id")  # only a draft can be approved
    with pytest.raises(Invalid, match="guided"):
        fake_kb.run_skill("ask-for-order-id", {})


def test_run_skill_validates_params_and_records_use(fake_kb: KnowledgeBase) -> None:
    fake_kb.add_skill(ADD)
    result = fake_kb.run_skill("add-numbers", {"a": 2, "b": 40})
    assert result.ok and result.value == 42
    with pytest.raises(Invalid) as caught:
        fake_kb.run_skill("add-numbers", {"a": "x"})
    assert "'b' is a required property" in str(caught.value) and "params.a" in str(caught.value)
    fake_kb.update_skill(
        "add-numbers", {"program": "def run(a, b):\n    raise ValueError('nope')\n"}
    )
    failed = fake_kb.run_skill("add-numbers", {"a": 1, "b": 1})
    assert (
        not failed.ok and failed.error_type == "ValueError" and "nope" in (failed.traceback or "")
    )
    skill = fake_kb.get_skill("add-numbers")
    assert (skill.uses, skill.failures) == (1, 1)


def test_duplicate_name_conflicts_and_unknown_names(fake_kb: KnowledgeBase) -> None:
    fake_kb.add_skill(ADD)
    with pytest.raises(Conflict, match="already exists"):
        fake_kb.add_skill(ADD)
    with pytest.raises(NotFound):
        fake_kb.get_skill("no-such-skill")
    with pytest.raises(NotFound, match="no version 7"):
        fake_kb.get_skill("add-numbers", 7)


def test_export_passes_reference_validator_and_reimports(
    fake_kb: KnowledgeBase, tmp_path: Path
) -> None:
    long = ("This skill refunds a damaged item after checking the order. " * 70).strip()
    assert len(long) > 4000
    fake_kb.add_skill(ADD)
    fake_kb.add_skill(guided("refund-damaged-item", long, scope="When an item arrived broken."))
    result = fake_kb.export(tmp_path / "out", format="skills")
    assert result.skills == 2
    for folder in (tmp_path / "out").iterdir():
        assert reference_validate(folder) == []
    with KnowledgeBase.open(tmp_path / "other", embedder=fake_kb.embedder.inner) as other:
        report = other.import_skills(tmp_path / "out")
        assert len(report.added) == 2 and not report.skipped
        assert other.get_skill("refund-damaged-item").description == long
        assert other.run_skill("add-numbers", {"a": 1, "b": 1}).value == 2
        again = other.import_skills(tmp_path / "out")
        assert not again.added and not again.skipped and len(again.unchanged) == 2


def test_import_rejects_unsafe_archives_with_reasons(
    fake_kb: KnowledgeBase, tmp_path: Path
) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(
            "good-skill/SKILL.md", "---\nname: good-skill\ndescription: Fine.\n---\nDo it.\n"
        )
        zf.writestr("../escape/SKILL.md", "---\nname: escape\ndescription: Bad.\n---\n")
    report = fake_kb.import_skills(archive)
    assert [fake_kb.get_skill(i).name for i in report.added] == ["good-skill"]
    assert any(".." in s["path"] or ".." in s["error"] for s in report.skipped)


def test_retrieval_prefers_validated_and_hides_drafts(kb: KnowledgeBase) -> None:
    kb.add_skill(dict(ADD))
    kb.validate_skill("add-numbers")
    kb.add_skill(guided("sum-two-numbers", "Add two integers and return their sum, by hand."))
    kb.add_skill(guided("sum-a-list", "Add up a list of integers and return the total."))
    kb.approve_skill("sum-a-list")
    names = [h.title for h in kb.search_skills("add two integers and return the sum")]
    assert names[0] == "add-numbers" and "sum-two-numbers" not in names and "sum-a-list" in names
    with_drafts = [h.title for h in kb.search_skills("add two integers", include_drafts=True)]
    assert "sum-two-numbers" in with_drafts
    kb.deprecate_skill("add-numbers")
    assert "add-numbers" not in [h.title for h in kb.search_skills("add two integers")]


def test_merge_and_prune_keep_the_trail(kb: KnowledgeBase) -> None:
    first = kb.add_skill(guided("refund-damaged-item", "Refund an item that arrived damaged."))
    kb.approve_skill("refund-damaged-item")
    twin = kb.add_skill(
        guided("refund-broken-item", "Refund an item that arrived broken or damaged.")
    )
    kb.add_skill(guided("track-parcel", "Tell the customer where their parcel is."))
    assert [a.name for a in kb.merge_skills(threshold=0.8, dry_run=True)] == ["refund-broken-item"]
    actions = kb.merge_skills(threshold=0.8)
    assert [(a.action, a.name) for a in actions] == [("merged", "refund-broken-item")]
    assert kb.get_skill("refund-broken-item").status == SkillStatus.deprecated
    assert any(e.kind == "merged_into" and e.dst == first.id for e in kb.edges(twin.id))
    for _ in range(5):
        kb.feedback(kb.get_skill("track-parcel").id, success=False)
    pruned = kb.prune_skills(min_uses=5, max_failure_rate=0.5)
    assert [a.name for a in pruned] == ["track-parcel"]
    assert kb.get_skill("track-parcel").status == SkillStatus.deprecated  # deprecated, not deleted


def test_mine_stores_drafts_with_derived_from_edges(fake_kb: KnowledgeBase) -> None:
    def run(i: int) -> dict[str, Any]:
        steps: list[dict[str, Any]] = [{"index": 0, "role": "user", "content": f"refund order {i}"}]
        for tool, args, result in (
            ("get_order", {"order_id": f"#{i}"}, f'{{"paid": {i}}}'),
            ("refund", {"order_id": f"#{i}", "reason": "damaged"}, "ok"),
        ):
            steps.append(
                {
                    "index": len(steps),
                    "role": "assistant",
                    "kind": "tool_call",
                    "tool": tool,
                    "args": args,
                }
            )
            steps.append(
                {
                    "index": len(steps),
                    "role": "tool",
                    "kind": "observation",
                    "tool": tool,
                    "result": result,
                }
            )
        return {"task": f"refund damaged order {i}", "outcome": "success", "steps": steps}

    ids = [r.id for r in fake_kb.add_experiences([run(i) for i in range(4)])]
    actions = fake_kb.mine_skills(min_support=3)
    (mined,) = [a for a in actions if a.detail == "get_order -> refund"]
    skill = fake_kb.get_skill(mined.name)
    assert skill.status == SkillStatus.draft and skill.provenance.source == "mined"
    assert set(skill.parameters["properties"]) == {"order_id"}  # reason never varies: a constant
    assert {e.dst for e in fake_kb.edges(skill.id, kinds={"derived_from"})} == set(ids)
    assert fake_kb.mine_skills(min_support=3)[0].action == "exists"


def test_skill_cli_round_trip(tmp_path: Path, embedder: Any) -> None:
    runner = CliRunner()
    store = ["--store", str(tmp_path / "cli-store")]
    spec = tmp_path / "skill.json"
    spec.write_text(json.dumps(ADD))
    assert runner.invoke(app, [*store, "skill", "add", str(spec)]).exit_code == 0
    result = runner.invoke(app, [*store, "skill", "validate", "add-numbers", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "validated"
    result = runner.invoke(
        app, [*store, "skill", "run", "add-numbers", "-p", '{"a": 20, "b": 22}', "--json"]
    )
    assert json.loads(result.stdout)["value"] == 42
    listed = json.loads(runner.invoke(app, [*store, "skill", "list", "--json"]).stdout)
    assert [s["name"] for s in listed] == ["add-numbers"]
    result = runner.invoke(app, [*store, "skill", "show", "add-numbers", "--md"])
    assert result.stdout.startswith("---\nname: add-numbers\n")
    bad = runner.invoke(app, [*store, "skill", "run", "add-numbers", "-p", "{oops", "--json"])
    assert bad.exit_code == 1 and "error" in json.loads(bad.stdout)
    missing = runner.invoke(app, [*store, "skill", "show", "nope"])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
    history = json.loads(
        runner.invoke(app, [*store, "skill", "history", "add-numbers", "--json"]).stdout
    )
    assert history[0]["status"] == "validated"


def test_mining_counts_tasks_not_trials(fake_kb: KnowledgeBase) -> None:
    """Four trials of one task are one piece of evidence: no skill at min_support=3."""

    def trial(task_id: str) -> dict[str, Any]:
        steps = [{"index": 0, "role": "user", "content": "move my booking"}]
        for tool in ("get_booking", "move_booking"):
            steps.append(
                {
                    "index": len(steps),
                    "role": "assistant",
                    "kind": "tool_call",
                    "tool": tool,
                    "args": {"booking": "IFOYYZ"},
                }
            )
        return {
            "task": "move booking IFOYYZ",
            "outcome": "success",
            "steps": steps,
            "provenance": {"source": "import", "source_id": task_id},
        }

    fake_kb.add_experiences([trial("task-7") for _ in range(4)])
    assert fake_kb.mine_skills(min_support=3) == []
    fake_kb.add_experiences([trial(f"task-{i}") for i in (8, 9)])
    assert [a.action for a in fake_kb.mine_skills(min_support=3)] == ["mined"]


# -- batched writes --------------------------------------------------------------------------------
class CountingEmbedder(HashEmbedder):
    """The test embedder, counting its calls: a batched write embeds once."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def encode(self, texts: Any) -> Any:
        self.calls += 1
        return super().encode(texts)


def test_add_skills_is_one_embedding_call_one_commit_and_all_or_nothing(tmp_path: Path) -> None:
    counting = CountingEmbedder()
    with KnowledgeBase.open(tmp_path / "store", embedder=counting) as kb:
        kb.add_skill(
            guided("warm-up", "Warm up when asked.")
        )  # the index tables exist from here on
        version = kb.store.items.table.version
        calls = counting.calls
        added = kb.add_skills(
            [guided(f"skill-{i}", f"Do skill {i} when asked.") for i in range(40)]
        )
        assert len(added) == 40 and counting.calls == calls + 1
        assert kb.store.items.table.version - version <= 2  # one append (and at most a compaction)
        assert {s.name for s in kb.list_skills()} >= {s.name for s in added}
        with pytest.raises(Conflict):
            kb.add_skills([guided("fresh-one", "Fresh."), guided("skill-3", "Again.")])
        with pytest.raises(Invalid):
            kb.add_skills(
                [guided("fresh-two", "Fresh."), {"name": "Bad Name!", "description": "x"}]
            )
        assert {s.name for s in kb.list_skills()} & {"fresh-one", "fresh-two"} == set()


def test_import_writes_packages_in_batches(tmp_path: Path) -> None:
    library = tmp_path / "library"
    for i in range(70):
        folder = library / f"pkg-{i}"
        folder.mkdir(parents=True)
        (folder / "SKILL.md").write_text(
            f"---\nname: pkg-{i}\ndescription: Package {i}. Use when asked.\n---\nDo it.\n"
        )
    counting = CountingEmbedder()
    with KnowledgeBase.open(tmp_path / "store", embedder=counting) as kb:
        report = kb.import_skills(library, approve=True)
        assert len(report.added) == 70 and len(report.approved) == 70
        assert counting.calls == 2  # 64 + 6
        assert {s.status for s in kb.list_skills()} == {SkillStatus.approved}
        (library / "pkg-5" / "SKILL.md").write_text(
            "---\nname: pkg-5\ndescription: Package 5, changed. Use when asked.\n---\nDo it.\n"
        )
        again = kb.import_skills(library)
        assert len(again.unchanged) == 69 and len(again.versions) == 1
        assert kb.get_skill("pkg-5").version == 2 and kb.get_skill("pkg-5").status == "draft"
