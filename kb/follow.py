"""The index follows the database: each server's derived index replays SQL's change log.

Every write numbers the records it changed in a per-namespace change log, under the writer lock
and inside its transaction (``kb.stores.sql``), so entries commit in number order and a follower
that has applied entry ``n`` can never later meet an entry below ``n``. A :class:`Follower` keeps,
next to its index, the last entry it applied per namespace (its cursor) and brings the index up to
date by reading each changed record's current state from SQL: a live record is (re)indexed with its
cached embedding, a tombstoned or purged one is dropped. Applying is idempotent, so a crash between
the index write and the cursor write only means an entry is applied twice.

A store whose index has no cursor yet (a new server, a lost index folder) builds its index from SQL
first (with progress), without taking the database's writer lock, so other servers keep writing.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kb.errors import KBError

if TYPE_CHECKING:
    from kb.store import Store

log = logging.getLogger("kb.follow")
BATCH = 256
"""Change-log entries (and records, when building) applied per index write."""
CURSOR_FILE = "follow.json"


class Follower:
    """Brings one store's derived index up to date from the change log in SQL."""

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: str | None = None
        """Why the last catch-up failed, if it did (cleared by the next one that succeeds)."""
        self.building: dict[str, int] | None = None
        """While the index is being built from SQL: ``{"done": n, "total": m}`` records."""
        self.last_sync: datetime | None = None
        self._own: dict[str, set[int]] = {}
        self._own_lock = threading.Lock()
        """Entries past the cursor that this process's writes indexed already."""

    # -- the cursor ----------------------------------------------------------------------------
    @property
    def cursor_path(self) -> Path:
        """Beside the index it describes (so a lost index folder loses its cursor too)."""
        uri = self.store.settings.index_uri
        if uri is None:
            return self.store.path / "index" / CURSOR_FILE
        if "://" in uri and not uri.startswith("file://"):
            return self.store.path / CURSOR_FILE  # an object-store index: the cursor stays local
        return Path(uri.removeprefix("file://")) / CURSOR_FILE

    def cursor(self) -> dict[str, int] | None:
        """The last change-log entry applied per namespace; None before the index was built."""
        try:
            data = json.loads(self.cursor_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return {str(ns): int(seq) for ns, seq in data.get("applied", {}).items()}

    def _save(self, cursor: dict[str, int]) -> None:
        path = self.cursor_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"applied": cursor}, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)

    def reset(self, heads: dict[str, int]) -> None:
        """Record that the index reflects the log up to ``heads`` (after a full rebuild)."""
        with self.store.writing():
            self._save(heads)

    def advance(self, assigned: dict[str, tuple[int, int]]) -> None:
        """After this process indexed its own write (entries ``first..last`` per namespace):
        move the cursor over them where it stood right before them, else remember them so that
        catching up skips them (another server's entries came first): no second pass either way.
        """
        if not assigned:
            return
        with self.store.writing():  # the cursor changes only under the store's write lock
            cursor = self.cursor()
            if cursor is None:
                return
            moved = False
            for namespace, (first, last) in assigned.items():
                if cursor.get(namespace, 0) == first - 1:
                    cursor[namespace] = last
                    moved = True
                else:
                    with self._own_lock:
                        self._own.setdefault(namespace, set()).update(range(first, last + 1))
            if moved:
                self._save(cursor)

    # -- catching up ---------------------------------------------------------------------------
    def catch_up(
        self, *, progress: Callable[[int, int], None] | None = None, wait: bool = True
    ) -> int:
        """Apply every change-log entry the index lacks (building the index from SQL first when
        it has no cursor); returns how many entries (or records, when building) were applied.

        Args:
            progress: called with (done, total) records while the index is built from SQL.
            wait: when another thread is catching up already, wait for it (else return 0).
        """
        # Lock order: this lock, then the store's write lock (taken per batch), never the
        # reverse; writers move the cursor under the write lock alone.
        if not self._lock.acquire(blocking=wait):
            return 0
        try:
            cursor = self.cursor()
            applied = 0
            if cursor is None:
                heads = self.store.sql.log_heads()  # read first: later entries are replayed
                if self.store.items.count() == 0:
                    applied = self._build(progress)
                with self.store.writing():
                    self._save(heads)
                cursor = heads
            for namespace, head in sorted(self.store.sql.log_heads().items()):
                at = cursor.get(namespace, 0)
                while at < head:
                    entries = self.store.sql.changes(namespace, after=at, limit=BATCH)
                    if not entries:
                        break
                    at = entries[-1][0]
                    with self._own_lock:  # not the write lock: that waits behind writers
                        own = self._own.get(namespace, set())
                        todo = {item_id for seq, item_id, _ in entries if seq not in own}
                        own.difference_update(range(entries[0][0], at + 1))
                    self._apply(namespace, sorted(todo), at)
                    applied += len(entries)
            self.last_sync = datetime.now(UTC)
            return applied
        finally:
            self._lock.release()

    def _apply(self, namespace: str, ids: list[str], seq: int) -> None:
        """Bring these records' index rows to their state in SQL, then move the cursor to
        ``seq`` (never back: a local write may have moved it further meanwhile)."""
        store = self.store
        if not ids:
            with store.writing():
                self._move(namespace, seq)
            return
        records = store.records(namespace)
        live = records.get_any(ids)
        items = list(live.values())
        vectors = store.embed_items(items) if items else None  # outside the lock: the slow part
        from kb.stores.index import in_list, quote

        with store.writing():
            # read again under the lock: a write since the first read (a tombstone, a new
            # version) has already indexed itself, and must not be undone with the stale state
            now = records.get_any(ids)
            gone = [i for i in ids if i not in now]
            keep = [n for n, item in enumerate(items) if item.id in now and now[item.id] == item]
            if keep and vectors is not None:
                store.sql.cache_put(store.embedder.drain())
                rows = store.index_rows([items[n] for n in keep], vectors[keep])
                store.items.upsert(rows, new=False)
            if gone:
                scope = f"namespace = {quote(namespace)} AND "
                store.items.delete_where(scope + in_list("id", gone))
                store.windows.delete_where(scope + in_list("exp_id", gone))
            self._move(namespace, seq)

    def _move(self, namespace: str, seq: int) -> None:
        cursor = self.cursor() or {}
        cursor[namespace] = max(cursor.get(namespace, 0), seq)
        self._save(cursor)

    def _build(self, progress: Callable[[int, int], None] | None) -> int:
        store = self.store
        total = len(store.sql.all_ids())
        done = 0
        self.building = {"done": 0, "total": total}
        log.info("building the index from SQL: %d records", total)
        try:
            for chunk in store.sql.iter_all_records(BATCH):
                vectors = store.embed_items(chunk)
                with store.writing():
                    store.sql.cache_put(store.embedder.drain())
                    store.items.upsert(store.index_rows(chunk, vectors), new=False)
                done += len(chunk)
                total = max(total, done)  # records written while building are built too
                self.building = {"done": done, "total": total}
                if progress is not None:
                    progress(done, total)
                log.info("index build: %d/%d records", done, total)
        finally:
            self.building = None
        if done:
            store.optimize()
        return done

    # -- staleness -----------------------------------------------------------------------------
    def lag(self) -> dict[str, Any]:
        """How far the index is behind SQL: entries not yet applied (in all and per namespace),
        the age in seconds of the oldest of them (0 when none), the last entry applied per
        namespace, the build progress and the last error."""
        heads = self.store.sql.log_heads()
        cursor = self.cursor()
        behind = {
            ns: head - (cursor or {}).get(ns, 0)
            for ns, head in heads.items()
            if head > (cursor or {}).get(ns, 0)
        }
        oldest = 0.0
        now = datetime.now(UTC)
        for ns in behind:
            stamp = self.store.sql.change_time(ns, (cursor or {}).get(ns, 0) + 1)
            if stamp is not None:
                oldest = max(oldest, (now - stamp).total_seconds())
        return {
            "behind": sum(behind.values()),
            "seconds": round(oldest, 3),
            "namespaces": behind,
            "applied": cursor or {},
            "built": cursor is not None,
            "building": self.building,
            "error": self.error,
            "last_sync": self.last_sync.isoformat() if self.last_sync else None,
        }

    # -- in the background (servers) -----------------------------------------------------------
    def start(self, interval: float) -> None:
        """Follow the log in a background thread, every ``interval`` seconds."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, args=(interval,), daemon=True, name="kb-follow"
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                self.catch_up()
                self.error = None
            except (KBError, OSError) as exc:
                self.error = str(exc)
                log.warning("following the change log failed: %s", exc)
            except Exception as exc:  # the database is unreachable, a LanceDB error: retry
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("following the change log failed: %s", self.error)
            self._stop.wait(max(0.0, interval - (time.monotonic() - start)))


__all__ = ["Follower"]
