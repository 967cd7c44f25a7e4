"""A throwaway PostgreSQL server for the tests: the system's binaries (``initdb``, ``postgres``),
run as an unprivileged user where the tests run as root (PostgreSQL refuses root). One server per
test session; each test gets a fresh database."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.served import free_port

UNPRIVILEGED = "nobody"


def binaries() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: on PATH, /usr/local/bin, or Debian's
    /usr/lib/postgresql/<version>/bin (newest first)."""
    found = shutil.which("initdb")
    candidates = [Path(found).parent] if found else []
    candidates.append(Path("/usr/local/bin"))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    return None


def tool(name: str) -> Path | None:
    """A PostgreSQL client program (``pg_dump``, ``pg_restore``): beside the server's binaries,
    on PATH, or in Debian's folders."""
    folders = [binaries()] + [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"))]
    for folder in folders:
        if folder is not None and (folder / name).exists():
            return folder / name
    found = shutil.which(name)
    return Path(found) if found else None


class PgServer:
    """A PostgreSQL server in ``root`` (data and socket folders), on a free loopback port."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.counter = 0

    @property
    def admin_url(self) -> str:
        return f"postgresql://kb@127.0.0.1:{self.port}/postgres"

    def libpq_url(self, database: str) -> str:
        """The URL of a database for PostgreSQL's own tools (psql, pg_dump)."""
        return f"postgresql://kb@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of a database on this server (psycopg 3)."""
        return f"postgresql+psycopg://kb@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """initdb and start; raises RuntimeError saying why when it cannot."""
        folder = binaries()
        if folder is None:
            raise RuntimeError("no PostgreSQL binaries (initdb, postgres) found")
        user = UNPRIVILEGED if os.geteuid() == 0 else None
        self.root.mkdir(parents=True, exist_ok=True)
        if user is not None:
            shutil.chown(self.root, user)
        data = self.root / "data"
        log = self.root / "server.log"
        init = subprocess.run(
            [str(folder / "initdb"), "-D", str(data), "-U", "kb", "--auth=trust", "-E", "UTF8"],
            user=user,
            cwd=self.root,
            capture_output=True,
            check=False,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.decode(errors='replace')[-500:]}")
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    str(folder / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.root),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "max_connections=200",
                ],
                user=user,
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(self.admin_url, connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"postgres did not start: {log.read_text(errors='replace')[-500:]}"
                    ) from exc
                time.sleep(0.1)

    def create_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        self.counter += 1
        name = f"kb_test_{os.getpid()}_{self.counter}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
