"""The SKILL.md package format: slugs, export, import, safe tree and zip reading."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from skills_ref import validate

from skills import (
    PackageError,
    SkillError,
    is_slug,
    read_package,
    read_tree,
    slugify,
    to_skill_md,
    write_package,
)

PROGRAM = "def run(a, b=1):\n    return a + b\n"


def executable_skill(**changes: Any) -> dict[str, Any]:
    skill: dict[str, Any] = {
        "name": "add-numbers",
        "description": "Add two numbers. Use when a sum is needed.",
        "version": 3,
        "scope": "Use for integer sums; not for floats.",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "description": "first term"},
                "b": {"type": "integer"},
            },
            "required": ["a"],
        },
        "returns": {"type": "integer"},
        "steps": ["Read both numbers.", "Add them:\n  a + b\nthen return.", "Report the sum."],
        "program": PROGRAM,
        "mode": "executable",
        "environment": {"python": ">=3.11"},
        "tests": [{"name": "adds", "params": {"a": 1, "b": 2}, "expect": 3, "expect_error": False}],
        "tags": ["math", "demo"],
        "domain": "arithmetic",
        "status": "validated",
        "provenance": {"source": "sdk", "imported_from": None, "source_id": "x1"},
    }
    skill.update(changes)
    return skill


def long_description() -> str:
    sentence = (
        "This skill does a careful thing with: colons, 'quotes', \"double quotes\" --- and dashes. "
    )
    text = ""
    while len(text) < 4000:
        text += sentence
    return text.strip()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Get User Details", "get-user-details"),
        ("get_user_details", "get-user-details"),
        ("MyWritingCompanion", "my-writing-companion"),
        ("ChatOCR", "chat-ocr"),
        ("myHTTPTool2", "my-http-tool2"),
        ("Crème Brûlée!!", "creme-brulee"),
        ("  --Hello__World--  ", "hello-world"),
        ("", "skill"),
        ("日本語", "skill"),
        ("a" * 70, "a" * 64),
        ("x" * 60 + "-" + "y" * 10, "x" * 60),
        ("word-" * 20, ("word-" * 13).rstrip("-")),
    ],
)
def test_slugify(raw: str, expected: str) -> None:
    slug = slugify(raw)
    assert slug == expected
    assert is_slug(slug)
    assert len(slug) <= 64


def test_round_trip_executable(tmp_path: Path) -> None:
    skill = executable_skill()
    folder = write_package(skill, tmp_path)
    assert folder == tmp_path / "add-numbers"
    assert (folder / "scripts" / "run.py").read_text() == PROGRAM
    assert validate(folder) == []
    back = read_package(folder)
    for key in ("name", "description", "version", "scope", "parameters", "returns", "steps"):
        assert back[key] == skill[key], key
    assert back["program"] == PROGRAM
    assert back["mode"] == "executable"
    assert back["tests"] == skill["tests"]
    assert back["status"] == "draft"  # written out, but a package never carries its status in
    assert back["tags"] == ["math", "demo"]
    assert back["domain"] == "arithmetic"
    assert back["environment"] == {"python": ">=3.11"}
    assert back["provenance"] == {"source": "sdk", "source_id": "x1"}


def test_long_description_is_cut_in_front_matter_and_restored(tmp_path: Path) -> None:
    description = long_description()
    skill = executable_skill(description=description, program=None, mode="guided", tests=[])
    folder = write_package(skill, tmp_path)
    assert validate(folder) == []
    cli = Path(sys.executable).with_name("agentskills")
    if cli.exists():
        done = subprocess.run([str(cli), "validate", str(folder)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    text = (folder / "SKILL.md").read_text()
    front = text.split("\n---\n", 1)[0]
    assert "## Description" in text
    assert "metadata:" in front
    assert 'version: "3"' in front
    back = read_package(folder)
    assert back["description"] == description
    assert back["mode"] == "guided"
    assert back["program"] is None


def test_front_matter_description_cut_at_sentence_end() -> None:
    text = to_skill_md(executable_skill(description=long_description()))
    import yaml

    front = yaml.safe_load(text.split("---\n")[1])
    assert len(front["description"]) <= 1024
    assert front["description"].endswith("dashes.")
    assert long_description().startswith(front["description"])


def test_guided_rewrite_removes_stale_program(tmp_path: Path) -> None:
    write_package(executable_skill(), tmp_path)
    folder = write_package(executable_skill(program=None, mode="guided", tests=[]), tmp_path)
    assert not (folder / "scripts" / "run.py").exists()
    assert read_package(folder)["mode"] == "guided"


def test_write_rejects_bad_name(tmp_path: Path) -> None:
    with pytest.raises(SkillError, match="add-numbers"):
        write_package(executable_skill(name="Add Numbers"), tmp_path)


def write_md(folder: Path, front: str, body: str = "Do the thing.\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SKILL.md").write_text(f"---\n{front}\n---\n{body}")
    return folder


def test_foreign_package_without_skill_json(tmp_path: Path) -> None:
    folder = write_md(
        tmp_path / "pdf-tools",
        "name: pdf-tools\ndescription: Work with PDFs.\nlicense: MIT\n"
        "metadata:\n  version: '2'\n  author: someone\nallowed-tools: Bash Read",
        "# PDF tools\n\nOpen the file first.\n\n```\ncode\n\nblock\n```\n\nThen extract text.\n",
    )
    skill = read_package(folder)
    assert skill["version"] == 2
    assert skill["mode"] == "guided"
    assert skill["steps"] == [
        "Open the file first.",
        "```\ncode\n\nblock\n```",
        "Then extract text.",
    ]
    assert skill["environment"] == {
        "license": "MIT",
        "allowed-tools": "Bash Read",
        "metadata.author": "someone",
    }


@pytest.mark.parametrize(
    ("front", "match"),
    [
        # unknown keys, a long description, a name that is not a slug or not the folder's: these
        # only break the spec, so they read with a warning (tests/test_skills_packages.py)
        ("name: bad-pkg", "non-empty string 'description'"),
        ("description: x", "non-empty string 'name'"),
        ("---\nname: bad-pkg\ndescription: x", "front matter must be a YAML mapping"),
        ("name: [unclosed\ndescription: x", "not valid YAML"),
        ("name: bad-pkg\ndescription: !!python/object:os.system x", "not valid YAML"),
    ],
)
def test_read_package_rejects(tmp_path: Path, front: str, match: str) -> None:
    folder = write_md(tmp_path / "bad-pkg", front)
    with pytest.raises(PackageError, match=match) as info:
        read_package(folder)
    assert "SKILL.md" in str(info.value)


@pytest.mark.parametrize(
    ("meta", "program", "match"),
    [
        ({"version": "two"}, None, "skill.json: version"),
        ({"tests": [{"params": [], "oops": 1}]}, None, "skill.json"),
        ({"mode": "executable"}, None, "has no scripts/run.py"),
        ({}, "def go():\n    pass\n", "no top-level function 'run"),
        ({}, "def run(:\n", "not valid Python"),
    ],
)
def test_read_package_rejects_skill_json_and_program(
    tmp_path: Path, meta: dict[str, Any], program: str | None, match: str
) -> None:
    folder = write_md(tmp_path / "pkg", "name: pkg\ndescription: x")
    (folder / "skill.json").write_text(json.dumps(meta))
    if program:
        (folder / "scripts").mkdir()
        (folder / "scripts" / "run.py").write_text(program)
    with pytest.raises(PackageError, match=match):
        read_package(folder)


def test_read_tree_folder(tmp_path: Path) -> None:
    root = tmp_path / "library"
    write_package(executable_skill(), root)
    write_package(executable_skill(name="nested-one", program=None, mode="guided"), root / "deep")
    write_md(root / "broken", "name: broken\nbogus: 1")
    linked = write_md(root / "linked", "name: linked\ndescription: x")
    os.symlink("/etc/passwd", linked / "secret.txt")
    big = write_md(root / "big", "name: big\ndescription: x")
    (big / "data.bin").write_bytes(b"0" * 5000)

    skills, rejections = read_tree(root, max_file_bytes=4000)
    assert sorted(s["name"] for s in skills) == ["add-numbers", "nested-one"]
    reasons = {Path(r.path).parts[-2:]: r.reason for r in rejections}
    assert "non-empty string 'description'" in reasons[("broken", "SKILL.md")]
    assert "symbolic link" in reasons[("linked", "secret.txt")]
    assert "package skipped" in reasons[("linked", "SKILL.md")]
    assert "5000 bytes" in reasons[("big", "data.bin")]
    assert "package skipped" in reasons[("big", "SKILL.md")]


def test_read_tree_file_count_limit(tmp_path: Path) -> None:
    write_package(executable_skill(), tmp_path)
    skills, rejections = read_tree(tmp_path, max_files=2)
    assert skills == []
    assert "limit of 2 files" in rejections[0].reason


def make_zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def test_read_tree_zip(tmp_path: Path) -> None:
    good = (tmp_path / "src" / "add-numbers").parent
    write_package(executable_skill(), good)
    members = {
        f"add-numbers/{p.relative_to(good / 'add-numbers').as_posix()}": p.read_bytes()
        for p in (good / "add-numbers").rglob("*")
        if p.is_file()
    }
    members["../escape/SKILL.md"] = b"---\nname: escape\ndescription: x\n---\n"
    members["/abs/SKILL.md"] = b"---\nname: abs\ndescription: x\n---\n"
    members["evil/SKILL.md"] = b"---\nname: evil\ndescription: x\n---\n"
    members["bad-yaml/SKILL.md"] = b"---\nname: bad-yaml\ndescription: [x\n---\n"
    archive = make_zip(tmp_path / "lib.zip", members, links={"evil/link": "/etc/passwd"})

    skills, rejections = read_tree(archive)
    assert [s["name"] for s in skills] == ["add-numbers"]
    assert skills[0]["program"] == PROGRAM
    text = "\n".join(f"{r.path}: {r.reason}" for r in rejections)
    assert "lib.zip!../escape/SKILL.md: member path contains '..'" in text
    assert "lib.zip!/abs/SKILL.md: absolute" in text
    assert "lib.zip!evil/link: symbolic links are not allowed" in text
    assert "evil/SKILL.md: package skipped" in text
    assert "bad-yaml/SKILL.md: front matter is not valid YAML" in text
    assert not (tmp_path / "escape").exists()


def test_read_tree_zip_package_at_root_and_limits(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "solo-skill.zip", {"SKILL.md": b"---\nname: solo-skill\ndescription: x\n---\n"}
    )
    skills, rejections = read_tree(archive)
    assert [s["name"] for s in skills] == ["solo-skill"] and rejections == []

    many = make_zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(5)})
    assert "more than 3 files" in read_tree(many, max_files=3)[1][0].reason
    bomb = make_zip(tmp_path / "bomb.zip", {"a/SKILL.md": b"x" * 3000, "b/x.txt": b"y" * 3000})
    skills, rejections = read_tree(bomb, max_total_bytes=4000)
    assert skills == [] and "expands past 4000 bytes" in rejections[0].reason


def test_read_tree_not_a_zip(tmp_path: Path) -> None:
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"not a zip")
    skills, rejections = read_tree(fake)
    assert skills == [] and "not a readable zip" in rejections[0].reason
