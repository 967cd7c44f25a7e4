"""Shared helpers of the storage benchmarks: realistic experiences, timing, result files."""

from __future__ import annotations

import json
import os
import platform
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kb.models import ExperienceCreate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


class TimedEmbedder:
    """Passes through to a real embedder, adding up the texts it embeds and the time it takes.

    Lets a benchmark split a store operation into model time and store-side time.
    """

    def __init__(self, inner: Any):
        self.inner = inner
        self.name = inner.name
        self.texts = 0
        self.seconds = 0.0

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        started = time.perf_counter()
        out = self.inner.encode(texts)
        self.seconds += time.perf_counter() - started
        self.texts += len(texts)
        return out

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))


def tau_experiences(limit: int | None = None) -> tuple[list[ExperienceCreate], str]:
    """Experiences from the tau-bench trajectories in ../shared/data, else generated ones."""
    from kb.importers import iter_experiences

    found: list[ExperienceCreate] = []
    sources = []
    for name in ("tau-retail", "tau-airline"):
        path = DATA / name / "trajectories.json"
        if path.exists():
            sources.append(name)
            found += [e for _, e in iter_experiences(path) if isinstance(e, ExperienceCreate)]
    if not found:
        return generated_experiences(limit or 500), "generated (../shared/data absent)"
    return (found[:limit] if limit else found), "+".join(sources)


def generated_experiences(n: int, *, seed: int = 7) -> list[ExperienceCreate]:
    """Support-desk-like experiences with steps, for when the real data is absent."""
    rng = random.Random(seed)
    verbs = ["refund", "exchange", "cancel", "return", "track", "update", "book", "rebook"]
    things = ["blender", "kettle", "laptop", "flight", "hotel room", "sofa", "phone", "bike"]
    why = ["arrived broken", "is late", "was the wrong size", "was charged twice", "never arrived"]
    out = []
    for i in range(n):
        verb, thing, reason = rng.choice(verbs), rng.choice(things), rng.choice(why)
        steps = [{"index": 0, "role": "user", "content": f"My {thing} {reason}, order #{i}."}]
        for j, tool in enumerate(["find_user", "get_order", f"{verb}_order"], start=1):
            steps.append(
                {
                    "index": 2 * j - 1,
                    "role": "assistant",
                    "kind": "tool_call",
                    "tool": tool,
                    "args": {"order_id": f"#{i}"},
                }
            )
            steps.append(
                {
                    "index": 2 * j,
                    "role": "tool",
                    "kind": "observation",
                    "tool": tool,
                    "result": json.dumps({"ok": True, "step": j}),
                }
            )
        out.append(
            ExperienceCreate(
                task=f"Customer {i} wants to {verb} the {thing} that {reason}",
                outcome=rng.choice(["success", "success", "failure"]),
                domain="shop",
                tags=[verb],
                steps=steps,
                strategy=f"verify the customer, look up order #{i}, then {verb} it",
            )
        )
    return out


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q))


def machine() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


def write(name: str, result: dict[str, Any], out: Path | None = None) -> Path:
    path = out or RESULTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path
