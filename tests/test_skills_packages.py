"""Skill packages as folders: every file kept byte for byte with its mode, lenient reading with
warnings, changed skills written without rewriting the author's body, digests, unsafe input."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from skills_ref import validate

from skills import (
    PACKAGE_KEYS,
    WARNING_RULES,
    PackageError,
    SkillError,
    make_resource,
    package_digest,
    package_files,
    read_package,
    read_tree,
    to_skill_md,
    write_package,
)
from skills.format import patch_front_matter, split_front_matter
from tests.conftest import requires_data

pytestmark = pytest.mark.timeout(120)

PROGRAM = "def run(a, b=1):\n    return a + b\n"


def tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: relative path -> (bytes, permission bits)."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in folder.rglob("*")
        if p.is_file()
    }


def write_md(folder: Path, front: str, body: str = "Do the thing.\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SKILL.md").write_text(f"---\n{front}\n---\n{body}")
    return folder


def sdk_skill(**changes: Any) -> dict[str, Any]:
    skill: dict[str, Any] = {
        "name": "add-numbers",
        "description": "Add two numbers. Use when a sum is needed.",
        "version": 2,
        "steps": ["Read both numbers.", "Add them.", "Report the sum."],
        "program": PROGRAM,
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}},
        "tests": [{"name": "adds", "params": {"a": 1, "b": 2}, "expect": 3}],
        "status": "validated",
    }
    skill.update(changes)
    return skill


@pytest.fixture(scope="module")
def library() -> Path:
    return requires_data("agent-skills")


@pytest.fixture(scope="module")
def imported(library: Path) -> dict[str, dict[str, Any]]:
    found, rejections = read_tree(library, files=True)
    assert rejections == []
    return {s["name"]: s for s in found}


def origin(skill: dict[str, Any]) -> Path:
    return Path(skill["provenance"]["imported_from"])


# -- the real third-party packages ----------------------------------------------------------------
def test_every_package_round_trips(
    library: Path, imported: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    folders = sorted(p.parent for p in library.glob("*/*/SKILL.md"))
    assert len(folders) == 20
    assert sorted(imported) == sorted(f.name for f in folders)
    files = size = valid = 0
    rules: Counter[str] = Counter()
    for folder in folders:
        skill = imported[folder.name]
        rules.update(w["rule"] for w in skill["warnings"])
        exported = write_package(skill, tmp_path / "out")
        original, written = tree(folder), tree(exported)
        assert sorted(written) == sorted(original), folder.name
        for rel, (data, mode) in original.items():
            assert written[rel][0] == data, f"{folder.name}/{rel}: bytes differ"
            assert written[rel][1] == mode, f"{folder.name}/{rel}: mode {written[rel][1]:o}"
        files += len(original)
        size += sum(len(data) for data, _ in original.values())
        # the reference validator says the same of the export as of the original
        assert validate(exported) == validate(folder), folder.name
        valid += not validate(exported)
        # re-imported, the export is the same package
        again = read_package(exported, files=True)
        assert again["digest"] == skill["digest"] == package_digest(skill)
    assert valid == 19
    assert validate(library / "anthropics-skills" / "claude-api") == [
        "Description exceeds 1024 character limit (1068 chars)"
    ]
    assert rules == {"description-length": 1}
    assert files == sum(1 for f in folders for p in f.rglob("*") if p.is_file())
    assert size > 1_000_000


def test_package_keys(imported: dict[str, dict[str, Any]], library: Path) -> None:
    skill = imported["web-artifacts-builder"]
    assert set(PACKAGE_KEYS) <= set(skill)
    assert skill["status"] == "draft" and skill["mode"] == "guided"
    folder = origin(skill)
    assert skill["skill_md"] == (folder / "SKILL.md").read_text(encoding="utf-8")
    assert skill["skill_md_mode"] == stat.S_IMODE((folder / "SKILL.md").stat().st_mode)
    paths = [r["path"] for r in skill["resources"]]
    assert paths == sorted(paths) and "SKILL.md" not in paths
    assert "scripts/shadcn-components.tar.gz" in paths
    binary = next(r for r in skill["resources"] if r["path"].endswith(".tar.gz"))
    assert binary["data"] == (folder / binary["path"]).read_bytes()
    assert binary["size"] == len(binary["data"])
    script = next(r for r in skill["resources"] if r["path"] == "scripts/init-artifact.sh")
    assert script["mode"] == stat.S_IMODE((folder / script["path"]).stat().st_mode)
    # without files=True the dict stays SkillCreate-shaped
    plain = read_package(folder)
    assert not set(plain) & set(PACKAGE_KEYS)
    assert {k: v for k, v in skill.items() if k not in PACKAGE_KEYS} == plain
    claude = imported["claude-api"]
    assert claude["warnings"] == [
        {
            "rule": "description-length",
            "path": f"{origin(claude)}/SKILL.md",
            "detail": "description is 1068 characters; the limit is 1024",
        }
    ]
    assert set(WARNING_RULES) >= {w["rule"] for w in claude["warnings"]}


def zip_folder(archive: Path, root: Path, folders: list[Path]) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for folder in folders:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(root).as_posix())
    return archive


def test_zip_round_trips(library: Path, tmp_path: Path) -> None:
    folders = sorted(p.parent for p in library.glob("*/*/SKILL.md"))
    archive = zip_folder(tmp_path / "library.zip", library, folders)
    found, rejections = read_tree(archive, files=True)
    assert rejections == [] and len(found) == len(folders)
    by_name = {s["name"]: s for s in found}
    for folder in folders:
        exported = write_package(by_name[folder.name], tmp_path / "out")
        assert tree(exported) == tree(folder), folder.name

    # one package zipped at the root of the archive
    solo = folders[0]
    archive = zip_folder(tmp_path / f"{solo.name}.zip", solo, [solo])
    (skill,), rejections = read_tree(archive, files=True)
    assert rejections == [] and skill["warnings"] == []
    assert tree(write_package(skill, tmp_path / "solo")) == tree(solo)


# -- lenient where only the spec is strict --------------------------------------------------------
@pytest.mark.parametrize(
    ("front", "rules", "detail"),
    [
        ("name: pkg\ndescription: x\nauthor: me", ["unknown-field"], "['author']"),
        ("name: pkg\ndescription: " + "x" * 1100, ["description-length"], "1100 characters"),
        ("name: pkg\ndescription: x\ncompatibility: " + "y" * 600, ["compatibility-length"], "600"),
        ("name: pkg\ndescription: x\nmetadata: [a, b]", ["field-type"], "'metadata'"),
        ("name: pkg\ndescription: x\nlicense: {a: b}", ["field-type"], "'license'"),
        ("name: other-name\ndescription: x", ["name-mismatch"], "'other-name'"),
        # the spec also wants the folder named exactly as the (unslugged) name
        ("name: Pkg\ndescription: x", ["name-format", "name-mismatch"], "stored as 'pkg'"),
    ],
)
def test_spec_rules_warn_and_export_unchanged(
    tmp_path: Path, front: str, rules: list[str], detail: str
) -> None:
    folder = write_md(tmp_path / "in" / "pkg", front, "# Title\n\nBody text.\n")
    (folder / "notes.txt").write_bytes(b"notes\n")
    skill = read_package(folder, files=True)
    assert [w["rule"] for w in skill["warnings"]] == rules
    assert detail in skill["warnings"][0]["detail"]
    assert skill["warnings"][0]["path"].endswith("pkg/SKILL.md")
    assert skill["name"] in ("pkg", "other-name")
    exported = write_package(skill, tmp_path / "out")
    assert tree(exported) == tree(folder)
    if rules != ["name-mismatch"]:
        # the export is the package as it was: the reference validator still rejects it
        assert validate(exported) == validate(folder) != []
    else:
        assert exported.name == "other-name" and validate(exported) == []


def test_lowercase_skill_md_and_foreign_run_py(tmp_path: Path) -> None:
    folder = tmp_path / "in" / "tool"
    (folder / "scripts").mkdir(parents=True)
    (folder / "skill.md").write_text("---\nname: tool\ndescription: A tool.\n---\nUse it.\n")
    cli = b"import sys\n\nif __name__ == '__main__':\n    print(sys.argv)\n"
    (folder / "scripts" / "run.py").write_bytes(cli)
    skill = read_package(folder, files=True)
    assert sorted(w["rule"] for w in skill["warnings"]) == ["program-ignored", "skill-md-name"]
    assert skill["mode"] == "guided" and skill["program"] is None
    exported = write_package(skill, tmp_path / "out")
    assert (exported / "SKILL.md").read_bytes() == (folder / "skill.md").read_bytes()
    assert (exported / "scripts" / "run.py").read_bytes() == cli
    # a changed skill still keeps the author's script
    changed = write_package({**skill, "tags": ["cli"]}, tmp_path / "changed")
    assert (changed / "scripts" / "run.py").read_bytes() == cli
    assert json.loads((changed / "skill.json").read_text())["mode"] == "guided"
    back = read_package(changed, files=True)
    assert back["tags"] == ["cli"] and back["program"] is None and back["warnings"] == []


# -- what stays refused ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("front", "match"),
    [
        ("name: pkg", "non-empty string 'description'"),
        ("description: x", "non-empty string 'name'"),
        ("name: [unclosed\ndescription: x", "not valid YAML"),
        ("name: pkg\ndescription: !!python/object:os.system x", "not valid YAML"),
    ],
)
def test_unreadable_front_matter_is_refused(tmp_path: Path, front: str, match: str) -> None:
    folder = write_md(tmp_path / "pkg", front)
    with pytest.raises(PackageError, match=match):
        read_package(folder, files=True)


def test_unsafe_folders_are_refused(tmp_path: Path) -> None:
    linked = write_md(tmp_path / "linked", "name: linked\ndescription: x")
    (linked / "assets").mkdir()
    os.symlink("/etc/passwd", linked / "assets" / "secret.txt")
    with pytest.raises(PackageError, match=r"assets/secret\.txt: is a symbolic link"):
        read_package(linked, files=True)
    skills, rejections = read_tree(tmp_path / "linked", files=True)
    assert skills == [] and "symbolic links are not allowed" in rejections[0].reason

    fifo = write_md(tmp_path / "fifo", "name: fifo\ndescription: x")
    os.mkfifo(fifo / "pipe")
    with pytest.raises(PackageError, match="pipe: is not a regular file"):
        read_package(fifo, files=True)

    big = write_md(tmp_path / "big", "name: big\ndescription: x")
    (big / "data.bin").write_bytes(b"0" * 5000)
    with pytest.raises(PackageError, match=r"data\.bin: is 5000 bytes"):
        read_package(big, files=True, max_file_bytes=4000)
    with pytest.raises(PackageError, match="over 3000 bytes"):
        read_package(big, files=True, max_total_bytes=3000)
    with pytest.raises(PackageError, match="more than 1 files"):
        read_package(big, files=True, max_files=1)


def test_zip_bomb_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb/SKILL.md", "---\nname: bomb\ndescription: x\n---\n")
        zf.writestr("bomb/zeros.bin", b"\0" * 900_000)
    skills, rejections = read_tree(archive, files=True)
    assert skills == []
    assert "expands" in rejections[0].reason and "the limit is 100" in rejections[0].reason
    assert "package skipped" in rejections[1].reason


@pytest.mark.parametrize(
    "path", ["../escape.txt", "/etc/x", "a/../../b", "a\\b", "C:/x", "", "a//b", "./a", "SKILL.md"]
)
def test_unsafe_resource_paths_are_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(SkillError, match="resource path"):
        make_resource(path, b"x")
    skill = sdk_skill(resources=[{"path": path, "data": b"x", "mode": 0o644}])
    with pytest.raises(SkillError, match="resource path"):
        write_package(skill, tmp_path)
    assert not (tmp_path / "escape.txt").exists()


def test_write_does_not_follow_a_linked_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    (dest / "add-numbers").mkdir(parents=True)
    os.symlink(outside, dest / "add-numbers" / "assets")
    skill = sdk_skill(resources=[{"path": "assets/x.txt", "data": b"x", "mode": 0o644}])
    with pytest.raises(SkillError, match="leads outside the package"):
        write_package(skill, dest)
    assert list(outside.iterdir()) == []


# -- changed skills: the author's body is never rewritten -----------------------------------------
def front_and_body(text: str) -> tuple[dict[str, Any], str]:
    return split_front_matter(text, "SKILL.md")


def test_changed_steps_go_to_skill_json(
    imported: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    skill = imported["mcp-builder"]
    changed = {**skill, "steps": ["Plan the server.", "Write the tools."], "tags": ["mcp"]}
    exported = write_package(changed, tmp_path)
    original, written = tree(origin(skill)), tree(exported)
    assert sorted(written) == sorted([*original, "skill.json"])
    assert all(written[rel] == original[rel] for rel in original)  # SKILL.md included
    meta = json.loads((exported / "skill.json").read_text())
    assert meta["steps"] == changed["steps"] and "description" not in meta
    assert validate(exported) == []
    back = read_package(exported, files=True)
    assert back["steps"] == changed["steps"] and back["tags"] == ["mcp"]
    assert back["digest"] == package_digest(changed) != skill["digest"]


def test_changed_description_patches_only_its_key(
    imported: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    skill = imported["claude-api"]  # a multi-line block scalar, 1,068 characters
    new = "Reference for the Claude API. Use when code imports anthropic."
    exported = write_package({**skill, "description": new}, tmp_path)
    text = (exported / "SKILL.md").read_text()
    old_lines, new_lines = skill["skill_md"].split("\n"), text.split("\n")
    assert [line for line in new_lines if line not in old_lines] == [f'description: "{new}"']
    assert front_and_body(text)[1] == front_and_body(skill["skill_md"])[1]
    assert front_and_body(text)[0]["license"] == "Complete terms in LICENSE.txt"
    assert validate(exported) == []  # the curator's fix makes it valid
    assert read_package(exported)["description"] == new
    assert not (exported / "skill.json").exists() or "description" not in json.loads(
        (exported / "skill.json").read_text()
    )


def test_long_description_is_cut_in_front_matter_and_kept_in_skill_json(
    imported: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    skill = imported["gh-fix-ci"]
    long = "Fix failing CI checks. " * 80
    environment = {**skill["environment"], "metadata.short-description": "Fix CI", "license": "MIT"}
    changed = {**skill, "description": long, "environment": environment}
    exported = write_package(changed, tmp_path)
    front, body = front_and_body((exported / "SKILL.md").read_text())
    assert len(front["description"]) <= 1024 and long.startswith(front["description"])
    assert front["metadata"] == {"short-description": "Fix CI"} and front["license"] == "MIT"
    assert body == front_and_body(skill["skill_md"])[1]
    assert json.loads((exported / "skill.json").read_text())["description"] == long.strip()
    assert validate(exported) == []
    back = read_package(exported)
    assert back["description"] == long.strip() and back["environment"] == environment


def test_program_added_and_removed(imported: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    skill = imported["create-plan"]
    executable = {**skill, "program": PROGRAM, "mode": "executable"}
    folder = write_package(executable, tmp_path / "a")
    assert (folder / "scripts" / "run.py").read_text() == PROGRAM
    back = read_package(folder, files=True)
    assert back["mode"] == "executable" and back["program"] == PROGRAM
    assert (folder / "SKILL.md").read_bytes() == skill["skill_md"].encode()
    guided = {**back, "program": None, "mode": None}
    folder = write_package(guided, tmp_path / "a")  # over the executable export
    assert not (folder / "scripts" / "run.py").exists()
    assert read_package(folder)["mode"] == "guided"


def test_sdk_package_is_generated_then_kept(tmp_path: Path) -> None:
    first = write_package(sdk_skill(), tmp_path / "a")
    assert validate(first) == []
    skill = read_package(first, files=True)
    assert skill["warnings"] == [] and skill["status"] == "draft"
    assert package_digest(sdk_skill()) == skill["digest"]
    again = write_package({**skill, "status": "approved", "version": 7}, tmp_path / "b")
    assert tree(again) == tree(first)  # status and version alone change nothing
    # a SKILL.md we generated is regenerated when the skill changes
    steps = ["Read a.", "Add b.", "Return it."]
    changed = write_package({**skill, "steps": steps}, tmp_path / "c")
    text = (changed / "SKILL.md").read_text()
    assert "## Steps\n\n1. Read a.\n2. Add b.\n3. Return it." in text
    assert "steps" not in json.loads((changed / "skill.json").read_text())
    assert read_package(changed)["steps"] == steps


def test_to_skill_md_is_the_package_text(imported: dict[str, dict[str, Any]]) -> None:
    skill = imported["systematic-debugging"]
    assert to_skill_md(skill) == skill["skill_md"]
    assert package_files(skill)[0]["path"] == "SKILL.md"
    plain = {k: v for k, v in skill.items() if k not in PACKAGE_KEYS}
    assert to_skill_md(plain).startswith("---\nname: systematic-debugging\n")


def test_digest_sees_bytes_and_modes(imported: dict[str, dict[str, Any]]) -> None:
    skill = imported["using-superpowers"]
    first = skill["resources"][0]
    edited = {**first, "data": first["data"] + b" "}
    chmodded = {**first, "mode": 0o755}
    digests = {
        package_digest(skill),
        package_digest({**skill, "resources": [edited, *skill["resources"][1:]]}),
        package_digest({**skill, "resources": [chmodded, *skill["resources"][1:]]}),
        package_digest({**skill, "skill_md_mode": 0o600}),
    }
    assert len(digests) == 4 and skill["digest"] in digests


# -- patching front matter ------------------------------------------------------------------------
def test_patch_front_matter_keeps_everything_else() -> None:
    text = (
        "\ufeff---\r\nname: x\r\n# a comment\r\ndescription: >\r\n  folded\r\n  text\r\n"
        "license: MIT\r\n---\r\nBody\r\n"
    )
    patched = patch_front_matter(text, {"description": "New one.", "license": None, "k": "v"})
    assert patched == (
        '\ufeff---\r\nname: x\r\n# a comment\r\ndescription: "New one."\r\nk: "v"\r\n'
        "---\r\nBody\r\n"
    )


def test_patch_front_matter_falls_back_when_lines_are_unusual() -> None:
    text = '---\nname: x\ndescription: "two\nlines"\n---\nBody\n'  # continues at column 0
    patched = patch_front_matter(text, {"description": "one"})
    front, body = front_and_body(patched)
    assert front == {"name": "x", "description": "one"} and body == "Body\n"
