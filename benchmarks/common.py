"""Shared helpers of the storage benchmarks: realistic experiences, timing, result files."""

from __future__ import annotations

import hashlib
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

    Lets a benchmark split a store operation into model time and store-side time. Texts found in
    ``known`` are answered from it without the model (a benchmark that reaches scale with vectors
    it computed beforehand, or that times a search without its query embedding); with
    ``synthetic``, other texts get a deterministic pseudo-random unit vector instead of the model
    (e.g. the step windows of records added only to reach a size). Neither is counted in
    ``texts`` or ``seconds``.
    """

    def __init__(self, inner: Any, *, known: dict[str, np.ndarray] | None = None):
        self.inner = inner
        self.name = inner.name
        self.texts = 0
        self.seconds = 0.0
        self.known: dict[str, np.ndarray] = known if known is not None else {}
        self.synthetic = False
        self.served = 0

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        todo = [t for t in texts if t not in self.known]
        if self.synthetic:
            self.known.update({t: synthetic_vector(t, self.dim) for t in todo})
            todo = []
        self.served += len(texts) - len(todo)
        if todo:
            started = time.perf_counter()
            out = self.inner.encode(todo)
            self.seconds += time.perf_counter() - started
            self.texts += len(todo)
            if len(todo) == len(texts):
                return out
            fresh = dict(zip(todo, out, strict=True))
        else:
            fresh = {}
        return np.stack([fresh[t] if t in fresh else self.known[t] for t in texts]).astype(
            np.float32
        )

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))


def synthetic_vector(text: str, dim: int) -> np.ndarray:
    """A unit vector that depends only on ``text`` (stable across processes)."""
    seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


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


def realistic_experiences(n: int) -> list[ExperienceCreate]:
    """``n`` experiences with distinct embedded texts of about 150 tokens and real step logs,
    built from the tau-bench trajectories: experience ``v`` is run ``a`` (its task, steps, outcome
    and tool plan) with, as its strategy, the opening of another run's final answer (pairs are
    distinct up to ~90,000 experiences). Generated ones when ../shared/data is absent."""
    tau, _ = tau_experiences()
    runs = [e for e in tau if e.steps]
    if not runs:
        return generated_experiences(n)
    out: list[ExperienceCreate] = []
    for v in range(n):
        run = runs[v % len(runs)]
        other = runs[(v % len(runs) + 1 + v // len(runs)) % len(runs)]
        plan = [s.tool for s in run.steps if s.tool and s.kind == "tool_call"][:6]
        data = run.model_dump()
        data.update(
            strategy=(other.final_answer or other.task)[:160],
            plan=plan,
            tags=[f"batch-{v // 50}"],
            artifacts={},
            provenance={"source": "benchmark", "source_id": f"bench-{v}"},
        )
        out.append(ExperienceCreate.model_validate(data))
    return out


def user_queries() -> list[str]:
    """Distinct user messages of the tau-bench trajectories (4 to 60 words), in a fixed shuffled
    order: agent-like queries that are never stored texts."""
    found: list[str] = []
    for name in ("tau-retail", "tau-airline"):
        path = DATA / name / "trajectories.json"
        if path.exists():
            for run in json.loads(path.read_text(encoding="utf-8")):
                for message in run["traj"]:
                    text = (message.get("content") or "").strip()
                    if message["role"] == "user" and 4 <= len(text.split()) <= 60:
                        found.append(text)
    if not found:
        found = [
            e.task.replace("Customer", "A shopper") for e in generated_experiences(3000, seed=99)
        ]
    distinct = list(dict.fromkeys(found))
    random.Random(13).shuffle(distinct)
    return distinct


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


def nearest_rank(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0-1) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))])


LOAD_SEED = [
    ("refund a damaged blender for order {n}", "failure", "refunded before checking the window"),
    ("book the cheapest flight from SFO to JFK, trip {n}", "success", "compared three carriers"),
    ("rotate the API keys of service {n}", "success", "announced the window, then rotated"),
    ("summarise the quarterly report {n}", "partial", "missed the appendix tables"),
]
"""Seed experiences of the server load benchmarks (``bench_mcp_load``, ``bench_team``)."""
LOAD_QUERIES = [
    "refund a broken kitchen appliance",
    "cheap flight to New York",
    "key rotation",
    "summarise a long report",
    "order not eligible for refund",
    "travel booking",
]
"""Their search queries."""


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50 and p95 of timings given in seconds, in milliseconds, with how many there were."""
    return {
        "p50": round(1000 * percentile(seconds, 50), 2),
        "p95": round(1000 * percentile(seconds, 95), 2),
        "n": len(seconds),
    }


def exact_top_k(
    matrix: np.ndarray, ids: Sequence[str], queries: np.ndarray, k: int
) -> list[list[str]]:
    """The ``k`` ids nearest to each query by cosine, by brute force (the ground truth of recall).

    ``matrix`` and ``queries`` hold one vector a row; they are normalised here."""
    rows = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    qs = np.atleast_2d(queries) / np.linalg.norm(np.atleast_2d(queries), axis=1, keepdims=True)
    scores = qs @ rows.T
    k = min(k, len(ids))
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    ordered = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)
    return [[ids[i] for i in row] for row in ordered]


def recall_at_k(found: Sequence[Sequence[str]], exact: Sequence[Sequence[str]], k: int) -> float:
    """Mean share of each query's exact top ``k`` that ``found`` (its first ``k``) contains."""
    if len(found) != len(exact):
        raise ValueError(f"{len(found)} result lists but {len(exact)} exact ones")
    if not exact:
        return float("nan")
    shares = [
        len(set(f[:k]) & set(e[:k])) / len(e[:k]) for f, e in zip(found, exact, strict=True) if e
    ]
    return float(np.mean(shares))


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
