"""A library of real Agent Skills packages imported into the store and exported again: the same
files, bytes and modes; re-imported unchanged; curated in bulk; files readable one by one."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from kb.cli import app
from kb.embeddings import HashEmbedder
from kb.models import SkillStatus
from kb.service import KnowledgeBase
from tests.conftest import requires_data


def _tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), os.stat(p).st_mode & 0o777)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _packages(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("SKILL.md"))


def test_every_shared_package_round_trips_through_the_store(tmp_path: Path) -> None:
    from skills_ref import validate

    library = requires_data("agent-skills")
    packages = _packages(library)
    assert len(packages) == 20
    with KnowledgeBase.open(tmp_path / "s", embedder=HashEmbedder()) as kb:
        report = kb.import_skills(library, approve=True)
        assert len(report.added) == 20 and not report.skipped, report.skipped
        assert [w["rule"] for w in report.warnings] == ["description-length"]  # claude-api
        guided = [s for s in kb.list_skills() if s.status == SkillStatus.approved]
        assert len(guided) == len(report.approved) > 0
        kb.export_skills(tmp_path / "out")
        again = kb.import_skills(library)
        assert len(again.unchanged) == 20 and not again.added and not again.versions
        files = kb.skill_files(packages[0].name)
        assert files[0].path == "SKILL.md" and files[0].mime == "text/markdown"
        first = kb.skill_file(packages[0].name, "SKILL.md")
        assert first.data == (packages[0] / "SKILL.md").read_bytes()
    passing = 0
    for package in packages:
        exported = tmp_path / "out" / package.name
        assert _tree(exported) == _tree(package), package.name
        passing += validate(exported) == []
    assert passing == 19


def test_cli_lists_drafts_and_files(tmp_path: Path) -> None:
    library = requires_data("agent-skills")
    package = _packages(library)[0]
    runner = CliRunner()
    store = ["--store", str(tmp_path / "cli")]
    imported = runner.invoke(app, [*store, "skill", "import", str(package)])
    assert imported.exit_code == 0, imported.output
    drafts = runner.invoke(app, [*store, "skill", "list", "--status", "draft", "--json"])
    assert package.name in drafts.stdout
    listed = runner.invoke(app, [*store, "skill", "show", package.name, "--files"])
    assert listed.exit_code == 0 and "SKILL.md" in listed.stdout
