"""Shared fixtures: a store in tmp_path, the real bundled model loaded once per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from kb.config import Settings
from kb.embeddings import CachedEmbedder, HashEmbedder, SentenceTransformerEmbedder
from kb.service import KnowledgeBase

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point KB_STORE at tmp_path so nothing touches the user's real store."""
    monkeypatch.setenv("KB_STORE", str(tmp_path / "default-store"))
    for name in ("KB_NAMESPACE", "KB_MODEL", "KB_LLM_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The real bundled all-MiniLM-L6-v2, loaded once per session."""
    model = SentenceTransformerEmbedder()
    model.encode(["warm up"])
    return model


@pytest.fixture
def kb(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> Iterator[KnowledgeBase]:
    """A fresh store on disk (SQLite file + LanceDB folder) with the real model."""
    with KnowledgeBase.open(tmp_path / "store", settings=Settings(), embedder=embedder) as store:
        yield store


@pytest.fixture
def fake_kb(tmp_path: Path) -> Iterator[KnowledgeBase]:
    """A store with a deterministic, meaning-free embedder: for logic that ignores meaning."""
    with KnowledgeBase.open(tmp_path / "fake-store", embedder=HashEmbedder()) as store:
        yield store


@pytest.fixture
def serve_http() -> Callable[[Any], AbstractContextManager[str]]:
    """A context manager serving an ASGI app on a free loopback port in a thread (uvicorn);
    it yields the base URL and stops the server on exit."""

    @contextmanager
    def serving(app: Any) -> Iterator[str]:
        import socket
        import threading
        import time

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        runner = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not runner.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            runner.should_exit = True
            thread.join(10)
            sock.close()

    return serving


def requires_data(*parts: str) -> Path:
    """The path of a shared data file, or skip the test when ../shared/data is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (third-party data lives in ../shared/data)")
    return path


__all__ = ["DATA", "ROOT", "CachedEmbedder", "requires_data"]
