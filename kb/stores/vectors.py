"""The derived index: one LanceDB table of vectors plus full-text indexes.

Every row mirrors one SQL record (experience or skill version) and carries the embedding model's
name and dimension. The table can always be rebuilt from SQL (``kb reindex``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("LANCE_LOG", "error")

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import FTS, Bitmap, HnswSq

TABLE = "items"
ANN_MIN_ROWS = 5_000
FILTER_COLUMNS = ("namespace", "kind", "latest", "status", "outcome")
"""Below this many rows an exhaustive vector scan is fast enough; above it, an ANN index pays."""
T = TypeVar("T")


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def in_list(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(quote(v) for v in values)})"


def retry(fn: Callable[[], T], *, attempts: int = 8) -> T:
    """Retry a LanceDB commit that lost a race with another process."""
    for attempt in range(attempts):
        try:
            return fn()
        except (OSError, RuntimeError, ValueError) as exc:
            message = str(exc).lower()
            if attempt == attempts - 1 or not any(
                word in message for word in ("conflict", "commit", "retry", "version", "not found")
            ):
                raise
            time.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")


def nearest(
    table: Any, vector: np.ndarray, *, k: int, where: str, columns: list[str]
) -> list[dict[str, Any]]:
    """The ``k`` rows nearest to ``vector`` (cosine) that pass ``where``, each with a ``score``."""
    rows = (
        table.search(vector.astype(np.float32), vector_column_name="vector")
        .metric("cosine")
        .where(where, prefilter=True)
        .select([*columns, "_distance"])
        .limit(k)
        .to_list()
    )
    for row in rows:
        row["score"] = 1.0 - float(row.pop("_distance"))
    return list(rows)


def ensure_ann(table: Any, name: str, *, min_rows: int) -> None:
    """Build the ANN index (IVF + HNSW with scalar quantisation, cosine) once a table is large."""
    rows = table.count_rows()
    if rows < min_rows or name in {index.name for index in table.list_indices()}:
        return
    partitions = max(4, int(rows**0.5) // 4)
    retry(
        lambda: table.create_index(
            "vector", config=HnswSq(distance_type="cosine", num_partitions=partitions), name=name
        )
    )


def schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),
            ("namespace", pa.string()),
            ("kind", pa.string()),
            ("outcome", pa.string()),
            ("domain", pa.string()),
            ("source_id", pa.string()),
            ("status", pa.string()),
            ("tags", pa.list_(pa.string())),
            ("latest", pa.bool_()),
            ("text", pa.string()),
            ("sig", pa.string()),
            ("model", pa.string()),
            ("dim", pa.int32()),
            ("vector", pa.list_(pa.float32(), dim)),
        ]
    )


class VectorIndex:
    """Vector + BM25 search over the derived LanceDB table."""

    def __init__(self, uri: str | Path):
        self.uri = str(uri)
        self.db = lancedb.connect(self.uri, read_consistency_interval=timedelta(0))
        self._table: Any = None
        self._writes = 0

    @property
    def table(self) -> Any:
        if self._table is None and TABLE in self._table_names():
            self._table = self.db.open_table(TABLE)
        return self._table

    def _table_names(self) -> list[str]:
        listing = self.db.list_tables()
        return list(getattr(listing, "tables", listing))

    @property
    def dim(self) -> int | None:
        if self.table is None:
            return None
        return int(self.table.schema.field("vector").type.list_size)

    def _ensure(self, dim: int) -> Any:
        if self.table is None:
            try:
                self._table = self.db.create_table(TABLE, schema=schema(dim))
            except (OSError, ValueError, RuntimeError):
                self._table = self.db.open_table(TABLE)  # another process made it first
        return self._table

    def _ensure_fts(self) -> None:
        names = {index.name for index in self.table.list_indices()}
        if "text_idx" not in names:
            self.table.create_index("text", config=FTS(), replace=True, name="text_idx")
        if "sig_idx" not in names:
            self.table.create_index(
                "sig",
                config=FTS(
                    base_tokenizer="whitespace",
                    stem=False,
                    remove_stop_words=False,
                    ascii_folding=False,
                ),
                replace=True,
                name="sig_idx",
            )

    # -- writes -------------------------------------------------------------------------------
    def upsert(self, rows: list[dict[str, Any]], *, new: bool = False) -> None:
        """Add rows; replaces rows with the same id unless the caller knows they are ``new``."""
        if not rows:
            return
        dim = len(rows[0]["vector"])
        table = self._ensure(dim)
        data = pa.Table.from_pylist(rows, schema=schema(dim))
        if new:
            retry(lambda: table.add(data))
        else:
            retry(
                lambda: (
                    table.merge_insert("id")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute(data)
                )
            )
        self._writes += 1
        if not {index.name for index in table.list_indices()} >= {"text_idx", "sig_idx"}:
            retry(self._ensure_fts)
        if self._writes % 50 == 0:
            self.optimize()

    def delete(self, ids: Sequence[str]) -> None:
        if self.table is None or not ids:
            return
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            retry(lambda chunk=chunk: self.table.delete(in_list("id", chunk)))  # type: ignore[misc]

    def drop(self) -> None:
        if TABLE in self._table_names():
            self.db.drop_table(TABLE)
        self._table = None

    def optimize(self) -> None:
        """Compact fragments, fold new rows into the indexes, build an ANN index when large."""
        if self.table is None:
            return
        retry(lambda: self.table.optimize(cleanup_older_than=timedelta(minutes=10)))
        rows = self.table.count_rows()
        names = {index.name for index in self.table.list_indices()}
        if rows >= ANN_MIN_ROWS:
            # Prefilters (namespace, kind, status...) then read bitmaps instead of every row.
            for column in FILTER_COLUMNS:
                if f"{column}_idx" not in names:
                    retry(
                        lambda column=column: self.table.create_index(  # type: ignore[misc]
                            column, config=Bitmap(), name=f"{column}_idx"
                        )
                    )
        ensure_ann(self.table, "vector_idx", min_rows=ANN_MIN_ROWS)

    # -- reads --------------------------------------------------------------------------------
    def vector_search(self, vector: np.ndarray, *, k: int, where: str) -> list[tuple[str, float]]:
        if self.table is None:
            return []
        rows = nearest(self.table, vector, k=k, where=where, columns=["id"])
        return [(row["id"], row["score"]) for row in rows]

    def text_search(
        self, query: str, *, k: int, where: str, column: str = "text"
    ) -> list[tuple[str, float]]:
        if self.table is None or not query.strip():
            return []
        try:
            rows = (
                self.table.search(query, query_type="fts", fts_columns=column)
                .where(where, prefilter=True)
                .select(["id", "_score"])
                .limit(k)
                .to_list()
            )
        except (ValueError, RuntimeError, OSError) as exc:
            if "index" in str(exc).lower():
                return []
            raise
        return [(row["id"], float(row["_score"])) for row in rows]

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if self.table is None or not ids:
            return {}
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(ids), 1000):
            chunk = list(ids[start : start + 1000])
            data = (
                self.table.search()
                .where(in_list("id", chunk))
                .select(["id", "vector"])
                .limit(len(chunk))
                .to_arrow()
            )
            for item_id, vec in zip(
                data["id"].to_pylist(), data["vector"].to_pylist(), strict=True
            ):
                out[item_id] = np.asarray(vec, dtype=np.float32)
        return out

    def ids(self, where: str | None = None) -> set[str]:
        if self.table is None:
            return set()
        query = self.table.search().select(["id"]).limit(None)
        if where:
            query = query.where(where)
        return set(query.to_arrow()["id"].to_pylist())

    def count(self, where: str | None = None) -> int:
        if self.table is None:
            return 0
        return int(self.table.count_rows(where)) if where else int(self.table.count_rows())

    def models(self) -> set[str]:
        if self.table is None:
            return set()
        return set(
            self.table.search().select(["model"]).limit(None).to_arrow()["model"].to_pylist()
        )


# -- step windows (refine) --------------------------------------------------------------------
WINDOWS = "windows"


def window_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),
            ("exp_id", pa.string()),
            ("namespace", pa.string()),
            ("outcome", pa.string()),
            ("domain", pa.string()),
            ("source_id", pa.string()),
            ("step", pa.int32()),
            ("error", pa.bool_()),
            ("text", pa.string()),
            ("next", pa.string()),
            ("model", pa.string()),
            ("dim", pa.int32()),
            ("vector", pa.list_(pa.float32(), dim)),
        ]
    )


class WindowIndex:
    """A second derived table: short windows of recent steps of each experience (``refine``).

    One row per decision point (the state before an agent acted), not per raw step, so step-level
    matching stays affordable at scale. Rebuilt from SQL like the main table.
    """

    def __init__(self, db: Any):
        self.db = db
        self._table: Any = None

    @property
    def table(self) -> Any:
        if self._table is None and WINDOWS in list(
            getattr(self.db.list_tables(), "tables", self.db.list_tables())
        ):
            self._table = self.db.open_table(WINDOWS)
        return self._table

    def upsert(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        dim = len(rows[0]["vector"])
        if self.table is None:
            try:
                self._table = self.db.create_table(WINDOWS, schema=window_schema(dim))
            except (OSError, ValueError, RuntimeError):
                self._table = self.db.open_table(WINDOWS)
        data = pa.Table.from_pylist(rows, schema=window_schema(dim))
        table = self._table
        retry(
            lambda: (
                table.merge_insert("id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(data)
            )
        )
        if "wtext_idx" not in {index.name for index in table.list_indices()}:
            retry(lambda: table.create_index("text", config=FTS(), replace=True, name="wtext_idx"))

    def delete_experiences(self, exp_ids: Sequence[str]) -> None:
        if self.table is None or not exp_ids:
            return
        for start in range(0, len(exp_ids), 500):
            chunk = exp_ids[start : start + 500]
            retry(lambda chunk=chunk: self.table.delete(in_list("exp_id", chunk)))  # type: ignore[misc]

    def drop(self) -> None:
        if self.table is not None:
            self.db.drop_table(WINDOWS)
        self._table = None

    def optimize(self) -> None:
        if self.table is None:
            return
        retry(lambda: self.table.optimize(cleanup_older_than=timedelta(minutes=10)))
        ensure_ann(self.table, "wvector_idx", min_rows=ANN_MIN_ROWS)

    def search(self, vector: np.ndarray, *, k: int, where: str) -> list[dict[str, Any]]:
        if self.table is None:
            return []
        columns = ["id", "exp_id", "outcome", "step", "error", "text", "next"]
        return nearest(self.table, vector, k=k, where=where, columns=columns)

    def text_search(self, query: str, *, k: int, where: str) -> list[dict[str, Any]]:
        if self.table is None or not query.strip():
            return []
        try:
            rows = (
                self.table.search(query, query_type="fts", fts_columns="text")
                .where(where, prefilter=True)
                .select(["id", "exp_id", "outcome", "step", "error", "text", "next", "_score"])
                .limit(k)
                .to_list()
            )
        except (ValueError, RuntimeError, OSError) as exc:
            if "index" in str(exc).lower():
                return []
            raise
        for row in rows:
            row["score"] = float(row.pop("_score"))
        return list(rows)

    def exp_ids(self) -> set[str]:
        if self.table is None:
            return set()
        data = self.table.search().select(["exp_id"]).limit(None).to_arrow()
        return set(data["exp_id"].to_pylist())

    def models(self) -> set[str]:
        if self.table is None:
            return set()
        data = self.table.search().select(["model"]).limit(None).to_arrow()
        return set(data["model"].to_pylist())


def columns(
    index: VectorIndex, ids: Sequence[str], names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Chosen columns of the main table's rows with these ids (e.g. ``sig`` for structure)."""
    if index.table is None or not ids:
        return {}
    out: dict[str, dict[str, Any]] = {}
    wanted = ["id", *[n for n in names if n != "id"]]
    for start in range(0, len(ids), 1000):
        chunk = list(ids[start : start + 1000])
        data = (
            index.table.search()
            .where(in_list("id", chunk))
            .select(wanted)
            .limit(len(chunk))
            .to_list()
        )
        out.update({row["id"]: row for row in data})
    return out
