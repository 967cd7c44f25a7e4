"""The helpers the side-by-side benchmark (benchmarks/bench_peers.py) reports with."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.common import TimedEmbedder, exact_top_k, latency_ms, recall_at_k
from kb.embeddings import HashEmbedder

pytestmark = pytest.mark.timeout(30)


def test_exact_top_k_is_cosine_order_whatever_the_norms() -> None:
    matrix = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0], [-1.0, 0.0]], dtype=np.float32)
    ids = ["east", "north", "northeast", "west"]
    got = exact_top_k(matrix, ids, np.array([[1.0, 0.1], [0.1, 1.0]]), 3)
    assert got == [["east", "northeast", "north"], ["north", "northeast", "east"]]


@pytest.mark.parametrize(
    ("found", "exact", "expected"),
    [
        ([["a", "b"]], [["a", "b"]], 1.0),
        ([["b", "a"]], [["a", "b"]], 1.0),  # order within the top k does not count
        ([["a", "x"], ["y", "z"]], [["a", "b"], ["c", "d"]], 0.25),
        ([["a", "b", "c"]], [["c", "d"]], 0.0),  # only the first k of what was found count
    ],
)
def test_recall_at_k(found: list[list[str]], exact: list[list[str]], expected: float) -> None:
    assert recall_at_k(found, exact, 2) == pytest.approx(expected)


def test_recall_needs_one_list_per_query() -> None:
    with pytest.raises(ValueError):
        recall_at_k([["a"]], [["a"], ["b"]], 1)


def test_latency_in_milliseconds() -> None:
    assert latency_ms([0.001 * i for i in range(1, 101)]) == {"p50": 50.5, "p95": 95.05, "n": 100}


def test_timed_embedder_serves_known_vectors_without_counting_them() -> None:
    inner = HashEmbedder(dim=8)
    known = {"stored": np.ones(8, dtype=np.float32)}
    timed = TimedEmbedder(inner, known=known)
    out = timed.encode(["stored", "fresh", "stored"])
    assert np.array_equal(out[0], known["stored"]) and np.array_equal(out[2], known["stored"])
    assert np.allclose(out[1], inner.encode(["fresh"])[0])
    assert (timed.texts, timed.served) == (1, 2)
    timed.synthetic = True
    first = timed.encode(["window text"])
    assert timed.texts == 1 and np.isclose(np.linalg.norm(first), 1.0)
    assert np.array_equal(TimedEmbedder(inner, known={}).encode(["x"]), inner.encode(["x"]))
