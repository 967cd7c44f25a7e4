"""Team scale: PostgreSQL as the shared source of truth, several servers, each index a follower.

Stores opened on different directories but one ``KB_SQL_URL`` are separate servers: they share
nothing but the database. Writers serialise on the database's lock, every change gets the next
number of its namespace's change log, and each server's index replays that log. The end-to-end
test runs real ``kb serve --http`` processes on a real PostgreSQL server with the real model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from kb.cli import app
from kb.embeddings import HashEmbedder
from kb.errors import Conflict
from kb.service import KnowledgeBase
from tests.conftest import ROOT
from tests.pg import PgServer, tool
from tests.served import free_port, health, tool_call

KB_BIN = Path(sys.executable).parent / "kb"
NS = "team"


def _open(path: Path, namespace: str = NS) -> KnowledgeBase:
    return KnowledgeBase.open(path, namespace=namespace, embedder=HashEmbedder())


def _live_ids(kb: KnowledgeBase) -> set[str]:
    return kb.store.records(NS).live_experience_ids()


# -- the change log --------------------------------------------------------------------------------
@pytest.mark.engines
@pytest.mark.timeout(300)
def test_change_log_has_no_gaps_under_concurrent_writers(tmp_path: Path, sql_engine: str) -> None:
    # two servers: on PostgreSQL two directories sharing only the database; on SQLite one
    # directory (its lock file is what serialises them)
    dirs = [tmp_path / "a", tmp_path / "b"] if sql_engine == "postgres" else [tmp_path / "s"] * 2
    stores = [_open(d) for d in dirs]
    errors: list[BaseException] = []
    rounds = 5

    def writer(kb: KnowledgeBase, n: int) -> None:
        try:
            for i in range(rounds):
                added = kb.add_experience({"task": f"writer {n} task {i}", "outcome": "success"})
                if i == 1:
                    kb.update_experience(added.id, {"strategy": f"changed by writer {n}"})
                if i == 2:
                    kb.delete_experience(added.id)
        except BaseException as exc:  # reported below: a writer must never fail
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(stores[n % 2], n)) for n in range(4)
    ]  # two writers per server
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(240)
    assert not errors, errors
    try:
        sql = stores[0].store.sql
        entries = sql.changes(NS, after=0, limit=100_000)
        per_writer = rounds + 2  # an upsert per add, one update, one tombstone
        assert [seq for seq, _, _ in entries] == list(range(1, 4 * per_writer + 1))
        assert sql.log_heads() == {NS: 4 * per_writer}
        ops = [op for _, _, op in entries]
        assert (ops.count("upsert"), ops.count("tombstone")) == (4 * (rounds + 1), 4)
        for kb in stores:
            kb.catch_up()
            assert kb.index_lag()["behind"] == 0
            assert kb.store.items.ids() == _live_ids(kb)
            assert len(kb.store.items.ids()) == 4 * (rounds - 1)
    finally:
        for kb in stores:
            kb.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_new_server_builds_its_index_from_sql_and_follows_every_change(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KB_SQL_URL", pg_url)
    with _open(tmp_path / "a") as a, _open(tmp_path / "b") as b:
        ids = [r.id for r in a.add_experiences([{"task": f"okapi {i} grazes"} for i in range(300)])]
        progress: list[tuple[int, int]] = []
        late: list[str] = []

        def during_build(done: int, total: int) -> None:
            progress.append((done, total))
            if len(progress) == 1:  # server A writes while B builds: B holds no database lock
                late.append(a.add_experience({"task": "okapi written mid-build"}).id)

        b.catch_up(progress=during_build)
        # the record written mid-build sorts last by id, so the build itself picks it up
        assert progress == [(256, 300), (301, 301)]
        assert b.store.items.ids() == {*ids, *late}
        assert b.index_lag()["behind"] == 0 and b.doctor().ok

        a.update_experience(ids[0], {"strategy": "zebra striped approach"})
        a.delete_experience(ids[1])
        a.delete_experience(ids[2])
        a.purge([ids[2]])
        lag = b.index_lag()
        assert lag["behind"] == 4 and lag["seconds"] >= 0
        report = b.doctor()
        assert not report.ok and "4 changes behind" in " ".join(c.detail for c in report.checks)
        assert b.catch_up() == 4
        assert b.store.items.ids() == {*ids, *late} - {ids[1], ids[2]}
        assert [h.id for h in b.search("zebra striped", mode="lexical")] == [ids[0]]
        assert b.index_lag()["behind"] == 0 and b.doctor().ok
        assert a.catch_up() == 0  # A indexed its own writes (purges and tombstones replayed)


@pytest.mark.engines
def test_a_schema_newer_than_this_release_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with _open(store) as kb, kb.store.sql.engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_migrations (version, name) VALUES (99, 'x')"))
    with pytest.raises(Conflict, match="schema is version 99, newer than this release"):
        _open(store)
    result = CliRunner().invoke(app, ["--store", str(store), "serve", "--http"])
    assert result.exit_code == 1 and "newer than this release" in result.output
    assert "Traceback" not in result.output


# -- backup and restore ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_pg_dump_backup_restores_into_a_new_database_and_a_new_server(
    tmp_path: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dump, restore = tool("pg_dump"), tool("pg_restore")
    if dump is None or restore is None:
        pytest.skip("pg_dump / pg_restore not found beside the PostgreSQL server")
    source = pg_server.create_database()
    monkeypatch.setenv("KB_SQL_URL", source)
    with _open(tmp_path / "a") as a:
        ids = [r.id for r in a.add_experiences([{"task": f"heron {i} fishing"} for i in range(5)])]
        a.update_experience(ids[0], {"strategy": "wade slowly"})
        a.delete_experience(ids[1])
        secret = a.create_token("backup", NS).secret
        history = a.experience_history(ids[0])
    backup = tmp_path / "kb.dump"
    subprocess.run(
        [str(dump), "-Fc", "-f", str(backup), pg_server.libpq_url(source.rsplit("/", 1)[1])],
        check=True,
        capture_output=True,
    )
    target = pg_server.create_database()
    subprocess.run(
        [
            str(restore),
            "--no-owner",
            "-d",
            pg_server.libpq_url(target.rsplit("/", 1)[1]),
            str(backup),
        ],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("KB_SQL_URL", target)
    with _open(tmp_path / "restored") as restored:  # a new server: its index is built from SQL
        assert restored.search("heron 3 fishing", mode="lexical")[0].id == ids[3]
        assert restored.store.items.ids() == set(ids) - {ids[1]}
        assert restored.experience_history(ids[0]) == history
        assert restored.resolve_token(secret) == NS
        assert restored.doctor().ok
        restored.add_experience({"task": "heron after the restore"})  # the log goes on
        assert restored.store.sql.log_heads()[NS] == 5 + 1 + 1 + 1


# -- several servers end to end --------------------------------------------------------------------
class Server:
    """A `kb serve --http` process with its own store directory (index) on the shared database."""

    def __init__(self, store: Path, env: dict[str, str]):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = store.with_suffix(".log")
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(KB_BIN), "--store", str(store), "serve", "--http", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )

    def health(self) -> dict[str, Any] | None:
        return health(self.base)

    def wait_ready(self, seconds: float = 180) -> None:
        deadline = time.monotonic() + seconds
        while self.health() is None:
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)

    def wait_caught_up(self, seconds: float = 60) -> dict[str, Any]:
        """Until /health reports the index has applied the whole change log."""
        deadline = time.monotonic() + seconds
        while True:
            health = self.health()
            if health is not None and health["index"]["behind"] == 0:
                return health
            assert time.monotonic() < deadline, f"still behind: {health}"
            time.sleep(0.1)

    def call(self, token: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """One tools/call over stateless streamable HTTP; the structured result."""
        result = tool_call(self.base, token, tool, arguments)
        assert not result.get("isError"), result
        return dict(result["structuredContent"])

    def found(self, token: str, task: str, exp_id: str) -> bool:
        """Whether a search finds the record: as a hit, or folded into one as a near-duplicate
        (these tasks differ by a number)."""
        hits = self.call(token, "search", {"query": task, "k": 10})["hits"]
        return exp_id in {i for h in hits for i in [h["id"], *h.get("duplicates", [])]}

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def servers(tmp_path: Path, pg_url: str) -> Iterator[tuple[list[Server], dict[str, str], str]]:
    env = {**os.environ, "KB_SQL_URL": pg_url, "KB_RATE_LIMIT": "0", "KB_NAMESPACE": NS}
    created = subprocess.run(
        [str(KB_BIN), "--store", str(tmp_path / "admin"), "token", "create", "--name", "t"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    token = created.stdout.strip()
    started: list[Server] = []
    try:
        yield started, env, token
    finally:
        for server in started:
            server.stop()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_servers_on_one_database_then_a_crash_then_a_late_third(
    tmp_path: Path, servers: tuple[list[Server], dict[str, str], str]
) -> None:
    started, env, token = servers
    one, two = Server(tmp_path / "one", env), Server(tmp_path / "two", env)
    started += [one, two]
    one.wait_ready()
    two.wait_ready()

    # clients write through one and read through the other, and the other way round
    acknowledged: dict[str, str] = {}
    for i in range(6):
        writer = one if i % 2 == 0 else two
        task = f"calibrate spectrometer {i} of the team lab"
        acknowledged[task] = writer.call(
            token, "record_experience", {"task": task, "outcome": "success"}
        )["id"]
    for server in (one, two):
        health = server.wait_caught_up()
        assert health["index"]["error"] is None
        for task, exp_id in acknowledged.items():
            assert server.found(token, task, exp_id), (server.base, task)

    # kill server one (SIGKILL) while clients are writing through it: nothing acknowledged is lost
    stop = threading.Event()
    lock = threading.Lock()
    failures: list[str] = []

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            task = f"titrate sample {n}-{i} for the team lab"
            try:
                exp_id = one.call(token, "record_experience", {"task": task, "outcome": "success"})[
                    "id"
                ]
            except Exception as exc:  # the server died under this call: not acknowledged
                failures.append(type(exc).__name__)
                return
            with lock:
                acknowledged[task] = exp_id
            i += 1

    clients = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    for thread in clients:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    one.stop(signal.SIGKILL)
    stop.set()
    for thread in clients:
        thread.join(60)
    assert len(acknowledged) >= 12 and failures  # it died under load

    health = two.wait_caught_up()
    assert health["index"]["error"] is None
    for task, exp_id in acknowledged.items():
        assert two.call(token, "get", {"id": exp_id})["task"] == task  # in SQL
        assert two.found(token, task, exp_id), task  # and searchable on the survivor

    # a third server started late builds its index from the database and serves everything
    three = Server(tmp_path / "three", env)
    started.append(three)
    three.wait_ready()
    three.wait_caught_up()
    for task, exp_id in acknowledged.items():
        assert three.found(token, task, exp_id), task
    late = three.call(
        token,
        "record_experience",
        {"task": "a write through the late server", "outcome": "success"},
    )["id"]
    two.wait_caught_up()
    assert two.found(token, "a write through the late server", late)
    assert "index_build" in three.log.read_text()  # its build reported progress
