"""Where a store keeps its data: the SQL URL and the index URI can point elsewhere (the scale path:
PostgreSQL and object storage in production; another SQLite file and folder here)."""

from __future__ import annotations

from pathlib import Path

from kb.config import Settings
from kb.embeddings import HashEmbedder
from kb.service import KnowledgeBase


def test_sql_url_and_index_uri_are_honoured(tmp_path: Path) -> None:
    settings = Settings(
        sql_url=f"sqlite:///{tmp_path / 'db' / 'shared.sqlite'}",
        index_uri=str(tmp_path / "objects" / "index"),
    )
    (tmp_path / "db").mkdir()
    with KnowledgeBase.open(tmp_path / "home", settings=settings, embedder=HashEmbedder()) as kb:
        added = kb.add_experience(
            {"task": "rotate the api key of the billing service", "outcome": "success"}
        )
        assert [h.id for h in kb.search("rotate api key", mode="lexical")] == [added.id]
    assert (tmp_path / "db" / "shared.sqlite").exists()
    assert (tmp_path / "objects" / "index").is_dir()
    assert not (tmp_path / "home" / "kb.sqlite").exists()
    # a second handle (another server process would do the same) sees the record
    with KnowledgeBase.open(tmp_path / "home", settings=settings, embedder=HashEmbedder()) as again:
        assert again.get_experience(added.id).task.startswith("rotate")


def test_environment_configures_the_store(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KB_STORE", str(tmp_path / "from-env"))
    monkeypatch.setenv("KB_NAMESPACE", "team-a")
    with KnowledgeBase.open(embedder=HashEmbedder()) as kb:
        assert kb.path == tmp_path / "from-env" and kb.namespace == "team-a"
