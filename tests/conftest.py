"""Shared fixtures: a store in tmp_path, the real bundled model loaded once per session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from kb.config import Settings
from kb.embeddings import CachedEmbedder, HashEmbedder, SentenceTransformerEmbedder
from kb.service import KnowledgeBase
from tests.pg import PgServer

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``engines`` run once on SQLite and once on PostgreSQL (``KB_SQL_URL`` set to
    a fresh database of the session's server; in the slow tier)."""
    if metafunc.definition.get_closest_marker("engines") is not None:
        if "sql_engine" not in metafunc.fixturenames:
            metafunc.fixturenames.append("sql_engine")
        # the PostgreSQL runs repeat fast SQLite tests against a server: the slow tier (`make
        # test` runs both tiers; `make test-fast` keeps to SQLite)
        metafunc.parametrize(
            "sql_engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)]
        )


@pytest.fixture(autouse=True)
def _isolated_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Point KB_STORE at tmp_path so nothing touches the user's real store; on the PostgreSQL
    run of an ``engines`` test, KB_SQL_URL at a fresh database."""
    monkeypatch.setenv("KB_STORE", str(tmp_path / "default-store"))
    for name in ("KB_NAMESPACE", "KB_MODEL", "KB_LLM_BASE_URL", "KB_SQL_URL"):
        monkeypatch.delenv(name, raising=False)
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("sql_engine") == "postgres":
        monkeypatch.setenv("KB_SQL_URL", request.getfixturevalue("pg_url"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the session (the system's binaries); skips, saying why, only
    where none can start."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[postgres]')")
    # its own folder under the system temp dir: pytest's are private to us, and the server may
    # run as another user
    server = PgServer(Path(tempfile.mkdtemp(prefix="kb-pg-")))
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"no PostgreSQL server could start: {exc}")
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def separate_settings(request: pytest.FixtureRequest) -> Callable[[], Settings]:
    """Settings of a store with its own source of truth: on the PostgreSQL run of an
    ``engines`` test a fresh database (a store directory alone does not separate stores that
    share ``KB_SQL_URL``), else the SQLite file of the store directory."""

    def make() -> Settings:
        callspec = getattr(request.node, "callspec", None)
        if callspec is not None and callspec.params.get("sql_engine") == "postgres":
            return Settings(sql_url=request.getfixturevalue("pg_server").create_database())
        return Settings()

    return make


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The SQLAlchemy URL of a fresh database on the session's PostgreSQL server."""
    return pg_server.create_database()


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
