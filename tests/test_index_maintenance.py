"""The derived index keeps itself fit on the write path (issue 13): compaction, full-text folding
and a vector index rebuilt on a geometric schedule, in a thread where the index is long-lived.

Real LanceDB tables, with the thresholds scaled down so that a test reaches them in seconds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from filelock import FileLock

from kb.stores import index as ix

DIM = 8


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ix, "ANN_MIN_ROWS", 200)
    monkeypatch.setattr(ix, "MAX_SEGMENTS", 2)


SPEC = replace(ix.ITEMS, max_fragments=4, max_unindexed=32)


def rows(start: int, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        {
            "id": f"r{start + i}",
            "namespace": "default",
            "kind": "experience",
            "outcome": "success",
            "domain": None,
            "source_id": None,
            "status": None,
            "tags": [],
            "latest": True,
            "text": f"refund order {start + i} keyboard",
            "sig": "get_order refund",
            "model": "fake",
            "dim": DIM,
            "vector": vectors[i].tolist(),
        }
        for i in range(n)
    ]


def layout(index: ix.Index) -> tuple[int, int, int]:
    """Fragments, vector index segments (0 without one), rows the index was trained on."""
    table = index.table
    vector = table.index_stats("vector_idx")
    trained = (table.schema.field("vector").metadata or {}).get(ix.TRAINED.encode(), b"0")
    return (
        table.stats()["fragment_stats"]["num_fragments"],
        (vector.num_indices or 0) if vector is not None else 0,
        int(trained),
    )


def nearest_is_itself(index: ix.Index, row: dict[str, Any]) -> bool:
    vector = np.asarray(row["vector"], dtype=np.float32)
    found = index.nearest(vector, k=1, where="namespace = 'default'")
    return bool(found) and found[0]["id"] == row["id"]


def test_one_row_at_a_time_keeps_fragments_and_segments_bounded(
    small: None, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    index = ix.Index(ix.connect(tmp_path / "index"), SPEC, background=False)
    index.upsert(rows(0, 250, rng), new=True)
    assert layout(index)[1:] == (1, 250)  # the vector index exists once the table is large
    written = []
    for i in range(250, 350):
        [row] = rows(i, 1, rng)
        index.upsert([row], new=True)
        written.append(row)
        fragments, segments, trained = layout(index)
        assert segments <= ix.MAX_SEGMENTS, i
        assert fragments < segments + SPEC.max_fragments, i
        assert trained * ix.GROWTH > i + 1, i  # retrained before it served twice its size
    assert index.table.count_rows() == 350
    unindexed = index.table.index_stats("text_idx").num_unindexed_rows
    assert unindexed < SPEC.max_unindexed
    assert sum(nearest_is_itself(index, row) for row in written[-20:]) >= 19


def test_batches_retrain_the_vector_index_as_the_table_doubles(small: None, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    index = ix.Index(ix.connect(tmp_path / "index"), SPEC, background=False)
    trained_at = []
    total = 0
    for size in (150, 100, 120, 200, 600, 100):
        index.upsert(rows(total, size, rng), new=True)
        total += size
        trained_at.append(layout(index)[2])
    assert trained_at == [0, 250, 250, 570, 1170, 1170]


def test_a_rebuild_runs_beside_writers_and_readers(small: None, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    index = ix.Index(ix.connect(tmp_path / "index"), SPEC)  # background, as in a server
    first = rows(0, 300, rng)
    index.upsert(first, new=True)  # starts the first build in a thread
    more = rows(300, 40, rng)
    for row in more:  # writes and reads go on meanwhile, whether or not it has finished
        index.upsert([row], new=True)
        assert nearest_is_itself(index, row)
    index.wait()
    assert not index.rebuilding
    assert index.table.count_rows() == 340
    assert layout(index)[2] >= 300
    assert all(nearest_is_itself(index, row) for row in first[:20])


def test_a_thread_leaves_the_rebuild_to_the_process_holding_it(small: None, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    index = ix.Index(ix.connect(tmp_path / "index"), SPEC, locks=tmp_path)
    other = FileLock(str(tmp_path / ".items.rebuild.lock"))
    with other:  # as if another process were rebuilding
        index.upsert(rows(0, 300, rng), new=True)
        index.wait()
        assert layout(index)[1:] == (0, 0)  # skipped, without an error
    index.upsert(rows(300, 1, rng), new=True)
    index.wait()
    assert layout(index)[1:] == (1, 301)


def test_an_index_from_before_the_schedule_is_retrained_on_the_next_write(
    small: None, tmp_path: Path
) -> None:
    rng = np.random.default_rng(4)
    index = ix.Index(ix.connect(tmp_path / "index"), SPEC, background=False)
    index.upsert(rows(0, 300, rng), new=True)
    index.table.update_field_metadata({"path": "vector", "metadata": {ix.TRAINED: None}})
    assert layout(index)[2] == 0
    index.upsert(rows(300, 1, rng), new=True)
    assert layout(index)[1:] == (1, 301)
