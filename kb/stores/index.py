"""The derived index: LanceDB tables of vectors plus full-text indexes, one ``Index`` per table.

Every row mirrors something SQL holds (a record, or a step window of an experience) and carries
the embedding model's name and dimension, so a table can always be rebuilt from SQL
(``kb reindex``). Two tables are configured below: ``ITEMS`` (experiences and skill versions)
and ``WINDOWS`` (decision points of experiences, for ``refine``).

Writers are serialised by the store's write lock and LanceDB retries its own commit conflicts, so
no write here needs a retry of its own. The one thing that writes without that lock is the vector
index's retraining (:meth:`Index.maintain`), in a thread while writers go on: LanceDB commits an
index build beside appends and updates, and writers leave compaction to it meanwhile.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

os.environ.setdefault("LANCE_LOG", "error")
# index statistics without the vector index's centroids (cheaper, and the future default)
os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")

import numpy as np
from filelock import FileLock, Timeout

log = logging.getLogger("kb.index")

ANN_MIN_ROWS = 5_000
"""Below this many rows an exhaustive vector scan is fast enough; above it, an ANN index pays."""
MAX_SEGMENTS = 8
"""Rebuild the vector index once it has more segments than this. Each compaction folds new rows
into a segment of their own, and LanceDB never compacts fragments that different segments cover
together, so segments and fragments grow together until a rebuild."""
GROWTH = 2.0
"""Retrain the vector index once the table has this many times the rows it was trained on (its
partitions fit the size it was built at): a geometric schedule, so rebuilds cost O(1) per row."""
TRAINED = "kb:trained_rows"
"""Metadata key of the ``vector`` column: the rows the vector index was trained on."""
LOCK_TIMEOUT = 300
"""Seconds to wait for another process's vector index rebuild."""
KEEP_VERSIONS = timedelta(seconds=2)
"""Old table versions older than this are removed when compacting (readers always open the
latest), so the table's disk use stays close to its compacted size."""


def quote(value: str) -> str:
    """A SQL string literal for LanceDB filters."""
    return "'" + value.replace("'", "''") + "'"


def in_list(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(quote(v) for v in values)})"


# full-text index configurations (lancedb.index.FTS keyword arguments): words, and whitespace
# tokens taken as they are (tool names in signatures)
_WORDS: dict[str, Any] = {}
_TOKENS: dict[str, Any] = {
    "base_tokenizer": "whitespace",
    "stem": False,
    "remove_stop_words": False,
    "ascii_folding": False,
}


def as_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Arrow rows as dicts, a ``vector`` column as float32 arrays (one conversion for all: a
    vector as a Python list costs more than the query that found it)."""
    columns: dict[str, list[Any]] = {}
    for name in table.column_names:
        column = table.column(name)
        if name == "vector":
            dim = column.type.list_size
            flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
            columns[name] = list(flat.astype(np.float32, copy=False).reshape(-1, dim))
        else:
            columns[name] = column.to_pylist()
    return [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]


@dataclass(frozen=True)
class TableSpec:
    """How one derived table looks: its columns (besides ``vector``), the column rows are
    keyed and grouped by, its full-text columns, and the columns prefilters read."""

    name: str
    columns: tuple[tuple[str, str], ...]
    """(name, Arrow type): ``string``, ``bool_``, ``int32`` or ``list<string>``."""
    group: str = "id"
    fts: dict[str, dict[str, Any]] = field(default_factory=dict)
    bitmaps: tuple[str, ...] = ()
    max_fragments: int = 16
    """Compact once writes have added this many data fragments (each write adds one) beyond
    those the vector index's segments hold apart: every fragment costs every search."""
    max_unindexed: int = 256
    """Fold new rows into the full-text indexes once this many are outside them: those are
    searched flat, and cost a long query ~0.2 ms each."""

    def schema(self, dim: int) -> pa.Schema:
        import pyarrow as pa  # on first use, like lancedb: light commands never load it

        def arrow(name: str) -> pa.DataType:
            return pa.list_(pa.string()) if name == "list<string>" else getattr(pa, name)()

        return pa.schema(
            [
                ("id", pa.string()),
                *((column, arrow(kind)) for column, kind in self.columns),
                ("vector", pa.list_(pa.float32(), dim)),
            ]
        )


ITEMS = TableSpec(
    name="items",
    columns=(
        ("namespace", "string"),
        ("kind", "string"),
        ("outcome", "string"),
        ("domain", "string"),
        ("source_id", "string"),
        ("status", "string"),
        ("tags", "list<string>"),
        ("latest", "bool_"),
        ("text", "string"),
        ("sig", "string"),
        ("model", "string"),
        ("dim", "int32"),
    ),
    fts={"text": _WORDS, "sig": _TOKENS},
    bitmaps=("namespace", "kind", "latest", "status", "outcome"),
    # searched by every search: kept within ~25% of its speed right after a compaction
    # (measured: 8 new fragments and rows cost 1 ms of 4, 16 cost 2-5 ms)
    max_fragments=8,
    max_unindexed=8,
)

WINDOWS = TableSpec(
    name="windows",
    columns=(
        ("exp_id", "string"),
        ("namespace", "string"),
        ("outcome", "string"),
        ("domain", "string"),
        ("source_id", "string"),
        ("step", "int32"),
        ("error", "bool_"),
        ("text", "string"),
        ("next", "string"),
        ("model", "string"),
        ("dim", "int32"),
    ),
    group="exp_id",
    fts={"text": _WORDS},
)


def connect(uri: str | Path) -> Any:
    """A LanceDB connection that always reads the latest committed version (lancedb is
    imported here, on first use: commands that never touch the index stay light)."""
    import lancedb

    return lancedb.connect(str(uri), read_consistency_interval=timedelta(0))


class Index:
    """Vector and full-text search over one derived LanceDB table."""

    def __init__(
        self, db: Any, spec: TableSpec, *, background: bool = True, locks: Path | None = None
    ):
        self.db = db
        self.spec = spec
        self._table: Any = None
        self.background = background
        """Rebuild the vector index in a thread of its own, writers going on meanwhile."""
        self._rebuild: threading.Thread | None = None
        self._rebuild_lock = FileLock(
            str((locks or Path(db.uri)) / f".{spec.name}.rebuild.lock"), thread_local=False
        )
        """Held across processes while the vector index is rebuilt, and by :meth:`vacuum`."""

    @property
    def table(self) -> Any:
        if self._table is None and self.spec.name in self._table_names():
            self._table = self.db.open_table(self.spec.name)
        return self._table

    def _table_names(self) -> list[str]:
        listing = self.db.list_tables()
        return list(getattr(listing, "tables", listing))

    @property
    def dim(self) -> int | None:
        if self.table is None:
            return None
        return int(self.table.schema.field("vector").type.list_size)

    def _index_names(self) -> set[str]:
        return {index.name for index in self.table.list_indices()}

    # -- writes -------------------------------------------------------------------------------
    def upsert(self, rows: list[dict[str, Any]], *, new: bool = False) -> None:
        """Add rows; replaces rows with the same id unless the caller knows they are ``new``."""
        if not rows:
            return
        schema = self.spec.schema(len(rows[0]["vector"]))
        if self.table is None:
            self._table = self.db.create_table(self.spec.name, schema=schema, exist_ok=True)
        import pyarrow as pa

        data = pa.Table.from_pylist(rows, schema=schema)
        if new:
            self.table.add(data)
        else:
            (
                self.table.merge_insert("id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(data)
            )
        missing = {f"{c}_idx" for c in self.spec.fts} - self._index_names()
        if missing:
            from lancedb.index import FTS

            for column, config in self.spec.fts.items():
                if f"{column}_idx" in missing:
                    self.table.create_index(
                        column, config=FTS(**config), replace=True, name=f"{column}_idx"
                    )
        self.maintain()

    def maintain(self) -> None:
        """Upkeep after a write, amortised (the caller holds the store's write lock): compact
        once writes have left the table fragmented or rows outside its full-text indexes, and
        (re)build the vector index when :meth:`_vector_stale` says so, in a thread of its own
        where :attr:`background` (writers go on meanwhile and leave compaction to it). Cheap
        reads of table metadata decide; whatever the write pattern, search stays close to its
        speed right after :meth:`optimize`, with no user action."""
        if self.table is None or self.rebuilding:
            return
        stats = self.table.stats()
        vector = self.table.index_stats("vector_idx")
        segments = (vector.num_indices or 0) if vector is not None else 0
        spec = self.spec
        compact = stats["fragment_stats"]["num_fragments"] >= segments + spec.max_fragments or any(
            (fts := self.table.index_stats(f"{column}_idx")) is not None
            and fts.num_unindexed_rows >= spec.max_unindexed
            for column in self.spec.fts
        )
        if compact:
            self.table.optimize(cleanup_older_than=KEEP_VERSIONS)
            vector = self.table.index_stats("vector_idx")  # one more segment, maybe
        rows = stats["num_rows"]
        if rows < ANN_MIN_ROWS or not self._vector_stale(vector, rows):
            return
        self._add_bitmaps()
        if not self.background:
            self._rebuild_vector()
            return
        self._rebuild = threading.Thread(
            target=self._rebuild_vector,
            kwargs={"in_thread": True},
            name=f"kb-index-{self.spec.name}",
            daemon=True,
        )
        self._rebuild.start()

    @property
    def rebuilding(self) -> bool:
        return self._rebuild is not None and self._rebuild.is_alive()

    def wait(self) -> None:
        """Wait for a vector index rebuild in progress (the store waits for it on close)."""
        if self._rebuild is not None:
            self._rebuild.join()
            self._rebuild = None

    def _vector_stale(self, vector: Any, rows: int) -> bool:
        """No vector index yet, too many segments, or grown past its training size."""
        if vector is None:
            return True
        metadata = self.table.schema.field("vector").metadata or {}
        trained = int(metadata.get(TRAINED.encode(), 0))
        return (vector.num_indices or 0) > MAX_SEGMENTS or rows >= GROWTH * trained

    def _add_bitmaps(self) -> None:
        from lancedb.index import Bitmap

        names = self._index_names()
        for column in self.spec.bitmaps:
            if f"{column}_idx" not in names:
                self.table.create_index(column, config=Bitmap(), name=f"{column}_idx")

    def _rebuild_vector(self, *, in_thread: bool = False) -> None:
        """Train the vector index afresh on a compacted table (a thread skips it while another
        process rebuilds; a failure in a thread is logged, and the next write tries again)."""
        try:
            with self._rebuild_lock.acquire(timeout=0 if in_thread else LOCK_TIMEOUT):
                self._train_vector(settle=in_thread)
        except Timeout:
            if not in_thread:
                raise
        except Exception:  # a thread has nobody to raise to
            if not in_thread:
                raise
            log.exception("rebuilding the vector index of %s failed", self.spec.name)

    def _train_vector(self, *, settle: bool) -> None:
        """The new index replaces the old one when it commits (readers use the old one until
        then, writers go on), and compaction follows under the new single segment; ``settle``:
        then remove the replaced files as soon as :data:`KEEP_VERSIONS` allows."""
        from lancedb.index import HnswSq

        started = time.perf_counter()
        rows = self.table.count_rows()
        partitions = max(4, int(rows**0.5) // 4)
        config = HnswSq(distance_type="cosine", num_partitions=partitions)
        self.table.create_index("vector", config=config, name="vector_idx", replace=True)
        self.table.update_field_metadata({"path": "vector", "metadata": {TRAINED: str(rows)}})
        self.table.optimize(cleanup_older_than=KEEP_VERSIONS)
        if settle:
            time.sleep(KEEP_VERSIONS.total_seconds())
            self.table.optimize(cleanup_older_than=KEEP_VERSIONS)
        log.info(
            "vector index of %s trained on %d rows in %.1f s",
            self.spec.name,
            rows,
            time.perf_counter() - started,
        )

    def delete(self, keys: Sequence[str], *, column: str | None = None) -> None:
        """Delete rows whose ``column`` (default: the spec's group column) is in ``keys``."""
        if self.table is None or not keys:
            return
        for start in range(0, len(keys), 500):
            self.delete_where(in_list(column or self.spec.group, keys[start : start + 500]))

    def delete_where(self, predicate: str) -> None:
        """Delete the rows that pass a LanceDB SQL predicate."""
        if self.table is not None:
            self.table.delete(predicate)

    def vacuum(self) -> None:
        """Compact and drop every older version of the table's files now (after a purge: the
        removed text must not survive in old fragments)."""
        self.wait()
        if self.table is not None:
            # a rebuild's files in progress (another process's) would count as unverified and go
            with self._rebuild_lock.acquire(timeout=LOCK_TIMEOUT), warnings.catch_warnings():
                # LanceDB warns that readers of older versions would fail: the caller holds the
                # write lock and readers reopen the latest version, so that is what we want here
                warnings.simplefilter("ignore", UserWarning)
                self.table.optimize(cleanup_older_than=timedelta(0), delete_unverified=True)

    def drop(self) -> None:
        self.wait()
        if self.spec.name in self._table_names():
            self.db.drop_table(self.spec.name)
        self._table = None

    def optimize(self) -> None:
        """Compact now, fold new rows into the indexes, and build the vector index once the
        table is large or rebuild it when due (in this thread, after any rebuild in progress)."""
        self.wait()
        if self.table is None:
            return
        self.table.optimize(cleanup_older_than=KEEP_VERSIONS)
        rows = self.table.count_rows()
        if rows >= ANN_MIN_ROWS:
            self._add_bitmaps()
            if self._vector_stale(self.table.index_stats("vector_idx"), rows):
                self._rebuild_vector()

    # -- reads --------------------------------------------------------------------------------
    def nearest(
        self, vector: np.ndarray, *, k: int, where: str, columns: Sequence[str] = ("id",)
    ) -> list[dict[str, Any]]:
        """The ``k`` rows nearest to ``vector`` (cosine) that pass ``where``, with a ``score``."""
        if self.table is None:
            return []
        rows = (
            self.table.search(vector.astype(np.float32), vector_column_name="vector")
            .metric("cosine")
            .where(where, prefilter=True)
            .select([*columns, "_distance"])
            .limit(k)
            .to_arrow()
        )
        found = as_rows(rows)
        for row in found:
            row["score"] = 1.0 - float(row.pop("_distance"))
        return found

    def matching(
        self,
        query: str,
        *,
        k: int,
        where: str,
        column: str = "text",
        columns: Sequence[str] = ("id",),
    ) -> list[dict[str, Any]]:
        """The ``k`` best BM25 matches of ``query`` in ``column`` that pass ``where``."""
        if self.table is None or not query.strip():
            return []
        rows = (
            self.table.search(query, query_type="fts", fts_columns=column)
            .where(where, prefilter=True)
            .select([*columns, "_score"])
            .limit(k)
            .to_arrow()
        )
        found = as_rows(rows)
        for row in found:
            row["score"] = float(row.pop("_score"))
        return found

    def vector_search(self, vector: np.ndarray, *, k: int, where: str) -> list[tuple[str, float]]:
        return [(r["id"], r["score"]) for r in self.nearest(vector, k=k, where=where)]

    def text_search(
        self, query: str, *, k: int, where: str, column: str = "text"
    ) -> list[tuple[str, float]]:
        return [
            (r["id"], r["score"]) for r in self.matching(query, k=k, where=where, column=column)
        ]

    def rows(self, ids: Sequence[str], names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Chosen columns of the rows with these ids (e.g. ``sig`` for structure, ``vector``)."""
        if self.table is None or not ids:
            return {}
        out: dict[str, dict[str, Any]] = {}
        wanted = ["id", *[n for n in names if n != "id"]]
        for start in range(0, len(ids), 1000):
            chunk = list(ids[start : start + 1000])
            query = self.table.search().where(in_list("id", chunk)).select(wanted)
            out.update({row["id"]: row for row in as_rows(query.limit(len(chunk)).to_arrow())})
        return out

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        return {key: row["vector"] for key, row in self.rows(ids, ["vector"]).items()}

    def distinct(self, column: str, where: str | None = None) -> set[Any]:
        """Every value of a column (ids, group keys, model names), of rows passing ``where``."""
        if self.table is None:
            return set()
        query = self.table.search().select([column]).limit(None)
        if where:
            query = query.where(where)
        return set(query.to_arrow()[column].to_pylist())

    def ids(self) -> set[str]:
        return self.distinct("id")

    def models(self) -> set[str]:
        return self.distinct("model")

    def count(self, where: str | None = None) -> int:
        if self.table is None:
            return 0
        return int(self.table.count_rows(where)) if where else int(self.table.count_rows())


__all__ = [
    "ITEMS",
    "WINDOWS",
    "Index",
    "TableSpec",
    "connect",
    "in_list",
    "quote",
]
