"""Skill retrieval quality on MetaTool (../shared/data/metatool).

The 199 tool descriptions are imported as guided skills (descriptions only: the queries are never
indexed). The single-tool queries are split once, by a fixed seed, into a dev half (for tuning) and
a test half (for reporting); a fixed-seed sample of each half is evaluated. The 497 two-tool queries
run against the 47 tools of ``big_tool_des.json`` in a second namespace. nDCG@10 and Recall@5 for
hybrid, vector-only and lexical-only search, in one run, plus plain dense retrieval (``dense``: one
embedding of each tool's name and description, ranked by cosine, outside the store) as the
baseline the store's fields and fusion must beat.

The test half is evaluated and printed only with ``--final`` (which evaluates the test half and the
two-tool set, not the dev half again): tune on the dev half (the default run writes
``skills_metatool_dev.json``), then run ``--final`` once (``skills_metatool.json``). ``--quick``
evaluates 300 dev queries and the two-tool set, for development.

Run: python benchmarks/bench_skills_metatool.py [--quick | --final] [--sample 1000] [--out ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kb import KnowledgeBase
from skills import slugify

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "metatool"
MODES = ("hybrid", "vector", "lexical")
QUICK_SAMPLE = 300
SEED = 20261122


def ndcg_at(ranked: list[str], relevant: set[str], k: int) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, name in enumerate(ranked[:k]) if name in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal


def recall_at(ranked: list[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant)


def load_tools(kb: KnowledgeBase, tools: dict[str, str]) -> dict[str, str]:
    """Add each tool as a guided, approved skill; returns tool name -> skill name."""
    names = {}
    for tool, description in tools.items():
        name = slugify(tool)
        assert name not in names.values(), f"slug collision on {tool}"
        names[tool] = name
        kb.add_skill(
            {
                "name": name,
                "description": description,
                "status": "approved",
                "provenance": {"source": "import", "source_id": tool},
            }
        )
    return names


def evaluate(kb: KnowledgeBase, queries: list[tuple[str, set[str]]], mode: str) -> dict[str, float]:
    ndcg = recall = 0.0
    for query, relevant in queries:
        ranked = [hit.title for hit in kb.search_skills(query, k=10, mode=mode)]
        ndcg += ndcg_at(ranked, relevant, 10)
        recall += recall_at(ranked, relevant, 5)
    return {"ndcg@10": round(ndcg / len(queries), 4), "recall@5": round(recall / len(queries), 4)}


def dense(
    kb: KnowledgeBase,
    tools: dict[str, str],
    names: dict[str, str],
    queries: list[tuple[str, set[str]]],
) -> dict[str, float]:
    """Plain dense retrieval: each tool's name and description embedded as one text."""
    order = list(tools)
    docs = kb.embedder.encode([f"{names[t].replace('-', ' ')}\n{tools[t]}" for t in order])
    vectors = kb.embedder.encode([q for q, _ in queries])
    docs = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    ndcg = recall = 0.0
    for (_, relevant), row in zip(queries, vectors @ docs.T, strict=True):
        ranked = [names[order[j]] for j in np.argsort(-row)[:10]]
        ndcg += ndcg_at(ranked, relevant, 10)
        recall += recall_at(ranked, relevant, 5)
    return {"ndcg@10": round(ndcg / len(queries), 4), "recall@5": round(recall / len(queries), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=1000, help="queries evaluated per half")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SAMPLE} dev queries")
    parser.add_argument("--final", action="store_true", help="also evaluate the test half (once)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick and args.final:
        sys.exit("--quick and --final exclude each other")
    if args.quick:
        args.sample = QUICK_SAMPLE
    if args.out is None:
        name = "skills_metatool.json" if args.final else "skills_metatool_dev.json"
        args.out = ROOT / "benchmarks" / "results" / name
    if not DATA.exists():
        sys.exit(f"{DATA} not found: this benchmark needs ../shared/data/metatool")

    plugins = json.loads((DATA / "plugin_des.json").read_text())
    big_tools = json.loads((DATA / "big_tool_des.json").read_text())
    with (DATA / "all_clean_data.csv").open() as f:
        rows = [(r["Query"], r["Tool"]) for r in csv.DictReader(f)]
    multi = json.loads((DATA / "multi_tool_query_golden.json").read_text())

    rng = random.Random(SEED)
    order = list(range(len(rows)))
    rng.shuffle(order)
    half = len(order) // 2
    splits = {"test": order[half:]} if args.final else {"dev": order[:half]}

    results: dict[str, object] = {
        "data": "MetaTool: 199 tool descriptions as guided skills; single-tool queries split 50/50 by "
        f"seed {SEED}, a seeded sample of {args.sample} per half evaluated; two-tool queries "
        "against the 47 tools of big_tool_des.json",
        "sizes": {
            "single_tool_queries": len(rows),
            "dev": half,
            "test": len(rows) - half,
            "sample_per_half": min(args.sample, half),
            "two_tool_queries": len(multi),
        },
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        with KnowledgeBase.open(Path(tmp) / "store", namespace="metatool") as kb:
            names = load_tools(kb, plugins)
            for split, indices in splits.items():
                sample = indices[: args.sample]
                queries = [(rows[i][0], {names[rows[i][1]]}) for i in sample]
                kb.embedder.encode(
                    [q for q, _ in queries]
                )  # batch-embed once; searches hit the cache
                results[split] = {mode: evaluate(kb, queries, mode) for mode in MODES}
                results[split]["dense"] = dense(kb, plugins, names, queries)
        with KnowledgeBase.open(Path(tmp) / "store", namespace="metatool-two-tool") as kb:
            names = load_tools(kb, big_tools)
            queries = [(item["query"], {names[t] for t in item["tool"]}) for item in multi]
            kb.embedder.encode([q for q, _ in queries])
            results["two_tool"] = {mode: evaluate(kb, queries, mode) for mode in MODES}
            results["two_tool"]["dense"] = dense(kb, big_tools, names, queries)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["final"] = bool(args.final)
    for split in ("dev", "test", "two_tool"):
        if split not in results:
            continue
        scores = results[split]
        assert isinstance(scores, dict)
        best_single = max(scores["vector"]["ndcg@10"], scores["lexical"]["ndcg@10"])
        scores["hybrid_minus_best_single_ndcg@10"] = round(
            scores["hybrid"]["ndcg@10"] - best_single, 4
        )
        scores["hybrid_minus_dense_ndcg@10"] = round(
            scores["hybrid"]["ndcg@10"] - scores["dense"]["ndcg@10"], 4
        )
        print(
            f"{split:9s} "
            + "  ".join(
                f"{mode}: nDCG@10 {scores[mode]['ndcg@10']:.3f} R@5 {scores[mode]['recall@5']:.3f}"
                for mode in (*MODES, "dense")
            )
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
