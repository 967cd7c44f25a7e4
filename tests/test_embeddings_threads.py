"""One model serves many threads (the MCP server's): batches embedded while other threads embed
or count tokens come out whole. A fast tokenizer keeps its padding settings in shared state, and
an unguarded model failed one MCP record call in a few hundred under load."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from kb.embeddings import SentenceTransformerEmbedder

TEXTS = [
    "refund",
    "refund a damaged keyboard bought last week for order 1042",
    "book the cheapest flight from SFO to JFK on Friday morning, economy, one adult",
    "rotate keys",
    "the payment failed with a 403 from the gateway after the card was declined twice",
]


@pytest.mark.slow  # thousands of calls, to give the race its chance (it failed before the fix)
def test_threads_embedding_and_counting_at_once_get_whole_answers(
    embedder: SentenceTransformerEmbedder,
) -> None:
    expected = embedder.encode(TEXTS)
    counts = [embedder.count_tokens(t) for t in TEXTS]
    errors: list[BaseException] = []
    results: list[Any] = []

    def embed() -> None:
        try:
            for _ in range(80):
                results.append(embedder.encode(TEXTS))
        except BaseException as exc:
            errors.append(exc)

    def count() -> None:
        try:
            for _ in range(3000):
                results.append([embedder.count_tokens(t) for t in TEXTS])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (embed, embed, count, count, count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors[0]
    for result in results:
        if isinstance(result, np.ndarray):
            assert np.allclose(result, expected, atol=1e-5)
        else:
            assert result == counts
