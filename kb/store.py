"""``Store``: one store location and everything the services share.

A ``Store`` holds the SQL engine (the source of truth), the derived LanceDB tables (items and step
windows), the per-namespace graph caches, the write lock and the embedding model, and owns the only
write path for records (:meth:`Store.write`). Services (``kb.services``) take a store and a
namespace; the MCP hub shares one store across all namespaces.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from kb import documents as docs
from kb.config import Settings
from kb.embeddings import CachedEmbedder, Embedder, SentenceTransformerEmbedder
from kb.errors import Conflict, Invalid, ModelMismatch
from kb.follow import Follower
from kb.models import Experience, Kind, Skill, Stats, new_id
from kb.stores.graph import Graph
from kb.stores.index import ITEMS, WINDOWS, Index, connect, in_list, quote
from kb.stores.records import Records, Session
from kb.stores.sql import SQLStore
from kb.stores.tokens import TokenStore

WRITE_BATCH = 256
INDEX_BATCH = 1024
CRASH_POINTS = ("before_commit", "after_commit", "mid_batch")
"""Where the ``KB_CRASH_AT`` test hook can kill a write: inside the SQL transaction just before
its commit, between the commit and the index, and after the first index batch."""
Item = Experience | Skill
Progress = Callable[[int], None]


class Store:
    """One store location (a directory, or a SQL URL plus an index URI), shared by services.

    Args:
        path: the store directory (SQLite file, LanceDB folder, lock file, tracer model).
        settings: configuration (``Settings()`` reads ``KB_*``).
        embedder: an embedding model to use instead of the configured sentence-transformers one.
    """

    def __init__(
        self, path: Path, *, settings: Settings | None = None, embedder: Embedder | None = None
    ):
        self.path = path
        self.settings = settings or Settings()
        path.mkdir(parents=True, exist_ok=True)
        url = self.settings.sql_url
        self.sql = SQLStore(url) if url else SQLStore.at(path)
        self.tokens = TokenStore(self.sql)
        self._file_lock = FileLock(str(path / ".write.lock"), timeout=300)
        self._thread_lock = threading.RLock()
        self._embedder_arg = embedder
        self._embedder: CachedEmbedder | None = None
        self.model_name = embedder.name if embedder is not None else self.settings.model
        self._records: dict[str, Records] = {}
        self._graphs: dict[str, tuple[str, Graph]] = {}
        self._groups: dict[str, GroupCommit] = {}
        self._repaired = False
        self.follower = Follower(self)
        """Keeps the index up to date with SQL's change log (other servers' writes)."""
        self.closed = False

    @functools.cached_property
    def _db(self) -> Any:
        return connect(self.settings.index_uri or self.path / "index")

    @functools.cached_property
    def items(self) -> Index:
        """The derived table of records (vectors, full-text, filters); opened on first use."""
        return Index(self._db, ITEMS, locks=self.path)

    @functools.cached_property
    def windows(self) -> Index:
        """The derived table of step windows (``refine``); opened on first use."""
        return Index(self._db, WINDOWS, locks=self.path)

    def close(self) -> None:
        """Release the engine (files stay as they are)."""
        if not self.closed:
            self.follower.stop()
            for name in ("items", "windows"):
                if name in self.__dict__:  # opened: wait for its index rebuild, if one runs
                    self.__dict__[name].wait()
            self.sql.dispose()
            self.closed = True

    def records(self, namespace: str) -> Records:
        """The record queries of one namespace."""
        if namespace not in self._records:
            self._records[namespace] = Records(self.sql, namespace)
        return self._records[namespace]

    # -- the model -----------------------------------------------------------------------------
    @property
    def embedder(self) -> CachedEmbedder:
        """The embedding model (loaded on first use), behind the content-hash cache."""
        if self._embedder is None:
            inner = self._embedder_arg or SentenceTransformerEmbedder(
                self.settings.model,
                device=self.settings.device,
                batch_size=self.settings.batch_size,
            )
            self._embedder = CachedEmbedder(inner, get=self.sql.cache_get)
        return self._embedder

    def stored_model(self) -> tuple[str | None, int | None]:
        """The model and dimension the store's vectors were made with (None when empty)."""
        meta = self.sql.get_metas(["model", "dim"])
        return meta.get("model"), int(meta["dim"]) if meta.get("dim") else None

    def stats(self, namespace: str) -> Stats:
        """Counts of a namespace and the state of its index."""
        model, dim = self.stored_model()
        return self.records(namespace).stats(
            str(self.path), model=model, dim=dim, schema_version=self.sql.schema_version
        )

    def model_matches(self) -> bool:
        stored, _ = self.stored_model()
        return stored is None or stored == self.model_name

    def vector_format_matches(self) -> bool:
        """Whether the store's vectors were made the way this version makes them (a store
        written before field-aware vectors has no mark and needs ``kb reindex``)."""
        stored, _ = self.stored_model()
        return stored is None or self.sql.get_meta("vector_format") == docs.VECTOR_FORMAT

    def check_model(self) -> None:
        """Refuse vector work when the store was embedded with another model."""
        stored, _ = self.stored_model()
        if stored is not None and stored != self.model_name:
            raise ModelMismatch(
                f"this store's vectors were made with {stored!r} but the configured model is "
                f"{self.model_name!r}; run `kb reindex` to re-embed with {self.model_name!r} "
                "(or configure the store's model)"
            )

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed queries with the store's model (cached in memory, never in the database)."""
        self.check_model()
        return self.embedder.encode(texts, persist=False)

    def embed_items(self, items: Sequence[Item], *, check: bool = True) -> np.ndarray:
        """The vectors of records: each the normalised weighted sum of the embeddings of its
        fields (:func:`kb.documents.vector_fields`), all fields embedded in one batch."""
        if check:
            self.check_model()
        fields = [docs.vector_fields(i) for i in items]
        texts = list(dict.fromkeys(t for f in fields for t, _ in f))
        if not texts:
            return np.zeros((len(items), self.embedder.dim), np.float32)
        embedded = self.embedder.encode(texts)
        row = {t: n for n, t in enumerate(texts)}
        out = np.zeros((len(items), embedded.shape[1]), np.float32)
        for n, parts in enumerate(fields):
            for text, weight in parts:
                out[n] += weight * embedded[row[text]]
            norm = float(np.linalg.norm(out[n]))
            if norm > 0:
                out[n] /= norm
        return out

    # -- writing -------------------------------------------------------------------------------
    def group(self, name: str) -> GroupCommit:
        """The group commit of one kind of write in this process (see :class:`GroupCommit`)."""
        with self._thread_lock:
            return self._groups.setdefault(name, GroupCommit())

    @contextmanager
    def writing(self) -> Iterator[None]:
        """One writer at a time per store: a thread lock and a file lock across processes."""
        with self._thread_lock:
            try:
                with self._file_lock:
                    yield
            except Timeout as exc:
                raise Conflict(
                    f"the store {self.path} is locked by another writer; try again"
                ) from exc

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """The write lock and one SQL transaction (committed on success, rolled back on error)."""
        with self.writing():
            with self.sql.session(lock=True) as session:
                yield session
                self.crash_point("before_commit")
            self.crash_point("after_commit")

    def crash_point(self, name: str) -> None:
        """Die here when the test hook ``KB_CRASH_AT`` names this point (crash-safety tests)."""
        if self.settings.crash_at == name:
            os.kill(os.getpid(), signal.SIGKILL)

    def write(
        self,
        items: Sequence[Item],
        *,
        vectors: np.ndarray | None = None,
        replace: bool = False,
        before_commit: Callable[[Session], None] | None = None,
    ) -> None:
        """The write path of records: one SQL transaction for every row, edge and event of the
        operation (rows marked unindexed), then the index in batches, then mark indexed.

        After a crash before the commit nothing is there; after it, everything is, and the rows
        the index lacks are indexed by :meth:`repair` on next use.

        Args:
            vectors: the items' vectors when already known (a lossless import), else embedded.
            replace: rows with these ids may exist in the index (an update).
            before_commit: more writes for the same transaction (edges, events, meta).
        """
        if vectors is None:
            vectors = self.embed_items(items) if items else np.zeros((0, 1), np.float32)
        if vectors.ndim != 2 or len(vectors) != len(items):
            raise Invalid(f"{len(items)} records but vectors of shape {vectors.shape}")
        stored_dim = self.stored_model()[1]
        if items and stored_dim is not None and vectors.shape[1] != stored_dim:
            raise Invalid(
                f"vectors have {vectors.shape[1]} dimensions; this store's have {stored_dim}"
            )
        with self.writing():
            with self.sql.session(lock=True) as session:
                by_ns: dict[str, list[Item]] = {}
                for item in items:
                    by_ns.setdefault(item.namespace, []).append(item)
                for namespace, group in by_ns.items():
                    self.records(namespace).put(session, group)
                self.sql.cache_put(self._embedder.drain() if self._embedder else {}, session)
                if items and self.sql.get_meta("model") is None:
                    self.sql.set_meta(
                        {
                            "model": self.model_name,
                            "dim": str(vectors.shape[1]),
                            "vector_format": docs.VECTOR_FORMAT,
                        },
                        session,
                    )
                if before_commit is not None:
                    before_commit(session)
                self.crash_point("before_commit")
            self.crash_point("after_commit")
            for start in range(0, len(items), INDEX_BATCH):
                chunk = items[start : start + INDEX_BATCH]
                rows = self.index_rows(chunk, vectors[start : start + INDEX_BATCH])
                self.items.upsert(rows, new=not replace)
                self.sql.mark_indexed([(i.namespace, i.id) for i in chunk])
                self.crash_point("mid_batch")
            self.follower.advance(session.info.get("kb_log", {}))

    def vacuum(self) -> None:
        """Rewrite the SQL file and drop old index versions (after a purge)."""
        with self.writing():
            self.items.vacuum()
            self.windows.vacuum()
        self.sql.vacuum()

    def unindex(self, namespace: str, ids: Sequence[str]) -> None:
        """Drop these records' rows (and step windows) from the derived tables."""
        if not ids:
            return
        scope = f"namespace = {quote(namespace)} AND "
        with self.writing():
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                self.items.delete_where(scope + in_list("id", chunk))
                self.windows.delete_where(scope + in_list("exp_id", chunk))
        self.follower.catch_up(wait=False)  # moves the cursor over the tombstones or purges

    def index_rows(self, items: Sequence[Item], vectors: np.ndarray) -> list[dict[str, Any]]:
        """The derived index rows of records."""
        rows = []
        dim = int(vectors.shape[1])
        for item, vector in zip(items, vectors, strict=True):
            row: dict[str, Any]
            if isinstance(item, Experience):
                row = {
                    "kind": Kind.experience.value,
                    "outcome": item.outcome.value,
                    "status": None,
                    "latest": item.merged_into is None,
                    "text": docs.experience_fts_text(item),
                    "sig": docs.signature_tokens(item.signature),
                }
            else:
                row = {
                    "kind": Kind.skill.value,
                    "outcome": None,
                    "status": item.status.value,
                    "latest": item.latest,
                    "text": docs.skill_fts_text(item),
                    "sig": "",
                }
            row.update(
                id=item.id,
                namespace=item.namespace,
                domain=item.domain,
                source_id=item.provenance.source_id,
                tags=list(item.tags),
                model=self.model_name,
                dim=dim,
                vector=vector.astype(np.float32),
            )
            rows.append(row)
        return rows

    def repair(self) -> int:
        """Index what SQL holds but the index lacks (after a crash); return how many rows."""
        pending = self.sql.unindexed()
        if not pending:
            return 0
        self.check_model()
        for start in range(0, len(pending), WRITE_BATCH):
            chunk = pending[start : start + WRITE_BATCH]
            vectors = self.embed_items(chunk, check=False)
            with self.writing():
                self.sql.cache_put(self.embedder.drain())
                self.items.upsert(self.index_rows(chunk, vectors), new=False)
                self.sql.mark_indexed([(i.namespace, i.id) for i in chunk])
        return len(pending)

    def ready(self) -> None:
        """Once per process before the first write or search: repair, and bring the index up to
        date with the change log (building it from SQL when it has never been built)."""
        if not self._repaired:
            self.repair()
            self.follower.catch_up()
            self._repaired = True

    def reindex(self, *, progress: Progress | None = None) -> int:
        """Rebuild the items table from SQL with the configured model; returns rows indexed."""
        heads = self.sql.log_heads()  # what the rebuilt index reflects at least
        with self.writing():
            self.items.drop()
            with self.sql.session() as session:
                self.sql.set_meta(
                    {"model": self.model_name, "vector_format": docs.VECTOR_FORMAT}, session
                )
                self.sql.mark_all_unindexed(session)
        total = 0
        for chunk in self.sql.iter_all_records(WRITE_BATCH):
            vectors = self.embed_items(chunk, check=False)
            with self.writing():
                if total == 0:
                    self.sql.set_meta({"dim": str(vectors.shape[1])})
                self.sql.cache_put(self.embedder.drain())
                self.items.upsert(self.index_rows(chunk, vectors), new=True)
                self.sql.mark_indexed([(i.namespace, i.id) for i in chunk])
            total += len(chunk)
            if progress:
                progress(len(chunk))
        self.optimize()
        self.follower.reset(heads)
        self._repaired = True
        return total

    def optimize(self) -> None:
        """Compact the derived tables and fold new rows into their indexes."""
        with self.writing():
            self.items.optimize()
            self.windows.optimize()

    # -- the graph -----------------------------------------------------------------------------
    def graph(self, namespace: str) -> Graph:
        """The graph of a namespace's edges, reloaded when another process changed it."""
        version = self.sql.get_meta(f"graph_version:{namespace}") or "0"
        cached = self._graphs.get(namespace)
        if cached is None or cached[0] != version:
            cached = (version, Graph(self.records(namespace).edges()))
            self._graphs[namespace] = cached
        return cached[1]

    def bump_graph(self, session: Session, namespace: str) -> None:
        """Mark a namespace's graph changed (inside the writing transaction)."""
        self.sql.set_meta({f"graph_version:{namespace}": new_id("g")}, session)


def embed_text(item: Item) -> str:
    """The texts a record's vector is made of, one a line (:meth:`Store.embed_items`)."""
    return "\n".join(text for text, _ in docs.vector_fields(item))


class GroupCommit:
    """Concurrent writers of one process share one write (group commit).

    A writer that finds no write in progress leads: it takes every request queued by then
    (its own among them) and writes them together (one embedding batch, one transaction, one
    index commit). Requests that queue meanwhile wait; when the write is done, the first of them
    leads the next one. So each caller writes at most one batch, its own, and under steady load
    no caller keeps writing for others. One writer alone is written at once, as before; a failed
    group write fails each of its requests with the same error (the caller checks each request
    before it queues, so one bad input does not fail the others).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._busy = False

    def submit(self, request: Any, write: Callable[[list[Any]], list[Any]]) -> Any:
        """Queue ``request``; ``write`` turns a list of requests into their results, in order."""
        mine = _Pending(request)
        with self._lock:
            self._queue.append(mine)
            if not self._busy:
                self._busy = mine.lead = True
        if not mine.lead:
            mine.wake.wait()  # written by a leader, or made the leader
        if not mine.written:
            self._write_queued(write)
        if mine.error is not None:
            raise mine.error
        return mine.result

    def _write_queued(self, write: Callable[[list[Any]], list[Any]]) -> None:
        """Write every queued request (the leader's own among them), then hand over."""
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            for pending, result in zip(batch, write([p.request for p in batch]), strict=True):
                pending.result = result
        except BaseException as exc:  # each waiter re-raises it
            for pending in batch:
                pending.error = exc
        with self._lock:
            for pending in batch:
                pending.written = True
                pending.wake.set()
            if self._queue:
                self._queue[0].lead = True
                self._queue[0].wake.set()
            else:
                self._busy = False


class _Pending:
    __slots__ = ("error", "lead", "request", "result", "wake", "written")

    def __init__(self, request: Any):
        self.request = request
        self.result: Any = None
        self.error: BaseException | None = None
        self.lead = False
        self.written = False
        self.wake = threading.Event()


__all__ = ["WRITE_BATCH", "GroupCommit", "Item", "Progress", "Store", "embed_text"]
