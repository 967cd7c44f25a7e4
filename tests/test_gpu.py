"""CUDA paths (issue 13): with device ``auto`` the embedding model runs on CUDA in fp16 with large
batches, and agrees with the CPU. Marked ``gpu``; skipped, saying why, where no CUDA device is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from kb.embeddings import SentenceTransformerEmbedder, resolve_device  # noqa: E402
from kb.service import KnowledgeBase  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]

TEXTS = [
    "refund a damaged keyboard bought last week",
    "book the cheapest flight from SFO to JFK",
    "rotate the API keys of the billing service",
    "the payment failed with a 403 from the gateway",
] * 40


def test_auto_runs_the_model_on_cuda_in_fp16_and_agrees_with_the_cpu() -> None:
    assert resolve_device("auto") == "cuda"
    gpu = SentenceTransformerEmbedder()
    on_gpu = gpu.encode(TEXTS)
    assert next(gpu.model.parameters()).dtype == torch.float16
    assert gpu.batch_size >= 256
    on_cpu = SentenceTransformerEmbedder(device="cpu").encode(TEXTS)
    assert on_gpu.dtype == np.float32 and on_gpu.shape == on_cpu.shape
    assert np.allclose(np.linalg.norm(on_gpu, axis=1), 1.0, atol=1e-3)
    assert float(np.min(np.sum(on_gpu * on_cpu, axis=1))) > 0.99


def test_a_store_on_cuda_finds_what_one_on_the_cpu_finds(tmp_path: Path) -> None:
    runs = [{"task": text, "outcome": "success"} for text in dict.fromkeys(TEXTS)]
    found = []
    for device in ("cuda", "cpu"):
        embedder = SentenceTransformerEmbedder(device=device)
        with KnowledgeBase.open(tmp_path / device, embedder=embedder) as kb:
            kb.add_experiences(runs)
            found.append(
                [kb.search(q, 1)[0].title for q in ("keyboard refund", "API key rotation")]
            )
    assert (
        found[0]
        == found[1]
        == [
            "refund a damaged keyboard bought last week",
            "rotate the API keys of the billing service",
        ]
    )
