"""The structure the code keeps: who may import the facade, where SQL lives, frozen migrations."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from kb.embeddings import HashEmbedder
from kb.migrations import LATEST, MIGRATIONS
from kb.service import KnowledgeBase

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MODULES = sorted((ROOT / "kb").rglob("*.py"))
SHELLS = {ROOT / "kb" / "__init__.py", ROOT / "kb" / "service.py"}


def _imports(tree: ast.AST) -> list[str]:
    """Every module a file imports, at any depth (lazy imports in functions count)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_shells_import_the_facade(path: Path) -> None:
    if path in SHELLS or (ROOT / "kb" / "cli") in path.parents:
        return
    imported = _imports(ast.parse(path.read_text(), str(path)))
    assert not [m for m in imported if m == "kb.service" or m.startswith("kb.service.")], (
        f"{path.relative_to(ROOT)} imports the KnowledgeBase facade; take a service instead"
    )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_calls_another_objects_private_members(path: Path) -> None:
    """``x._name`` only on ``self``, ``cls`` or the object's own class (``Index._x`` inside
    ``Index``): a private member is private to the code that defines it."""
    tree = ast.parse(path.read_text(), str(path))
    classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    offenders = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in {"self", "cls", *classes}:
                continue
            offenders.append(f"line {node.lineno}: .{node.attr}")
    assert not offenders, f"{path.relative_to(ROOT)}: {offenders}"


def test_migrations_are_numbered_history() -> None:
    assert [number for number, _, _ in MIGRATIONS] == list(range(1, LATEST + 1))


def test_a_store_written_by_release_0_1_opens_and_migrates(tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(FIXTURES / "store-v1", store)
    with KnowledgeBase.open(store, embedder=HashEmbedder()) as kb:
        stats = kb.stats()
        assert stats.schema_version == LATEST
        assert (stats.experiences, stats.skills, stats.edges, stats.events) == (2, 1, 1, 1)
        assert stats.pending_index == 0
        assert kb.get_skill("refund-order").status.value == "approved"
        hits = kb.search("refund a broken blender", k=5, kind="experience")
        assert len(hits) == 2
        assert [t.name for t in kb.list_tokens()] == ["fixture"]
        failure = next(e for e in kb.list_experiences(outcome="failure"))
        assert failure.steps[0].error and "exceeds" in failure.steps[0].error
    with KnowledgeBase.open(store, namespace="team-b", embedder=HashEmbedder()) as other:
        assert [e.task for e in other.list_experiences()] == ["Reset a password"]
