"""Plan-stage retrieval on tau-bench: do the retrieved successes follow the same procedure?

One store holds tau-airline and tau-retail (all 300 trajectories; task ids are prefixed with the
data set, ``tau-airline:12``, so the two sets' ids do not collide). Leave one task out: for each task
with gold actions, ``retrieve`` is called with its instruction while a filter
(``exclude_source_ids``) hides that task's own trajectories. Relevance of a retrieved success =
Jaccard overlap of the tool multisets of the two tasks' gold actions (``info.task.actions``, kept
at import as ``Experience.gold_actions``). Tasks without gold actions are skipped as queries and
left out of the candidates (their relevance is undefined). Metrics: mean relevance of the top 1 and
top 3 strategies, and nDCG@5 with that overlap as graded relevance (ideal = the best five
candidates of the store). Runs: vector only, lexical only, hybrid (vector + lexical, RRF) and
hybrid + structure (plus the signature derived from the best three first-pass hits, pseudo-relevance
feedback: what ``retrieve`` does by default). These runs keep near-duplicates (``diverse=False``), as
the graded relevance counts every copy; one more run shows the default ``retrieve`` with
near-duplicates collapsed. Every number is per domain, and the result says, per domain, whether
each fused run is at least as good as the best single signal of the same run.

Run: ``python benchmarks/bench_retrieve.py [--quick] [--data DIR]``; writes
``benchmarks/results/retrieve.json`` (``--quick``: every other task as a query, no diverse run, and
``retrieve_quick.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kb.config import Settings  # noqa: E402
from kb.importers import from_openai, read_records  # noqa: E402
from kb.models import Experience  # noqa: E402
from kb.retrieval import multiset_jaccard  # noqa: E402
from kb.service import KnowledgeBase  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "retrieve.json"
DATASETS = ("tau-airline", "tau-retail")
RUNS: dict[str, dict[str, Any]] = {
    "vector": {"mode": "vector", "structure": False, "diverse": False},
    "lexical": {"mode": "lexical", "structure": False, "diverse": False},
    "hybrid": {"mode": "hybrid", "structure": False, "diverse": False},
    "hybrid+structure": {"mode": "hybrid", "structure": True, "diverse": False},
    "hybrid+structure, diverse": {"mode": "hybrid", "structure": True, "diverse": True},
}
FUSED = ("hybrid", "hybrid+structure")


def tools(exp: Experience) -> list[str]:
    return [str(a.get("name")) for a in exp.gold_actions or []]


def ndcg(rels: list[float], ideal: list[float]) -> float:
    dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rels))
    best = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / best if best else 0.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="leave-one-task-out retrieval benchmark")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="every other task, no diverse run")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = RESULTS.with_name("retrieve_quick.json") if args.quick else RESULTS
    runs = {r: o for r, o in RUNS.items() if not (args.quick and o["diverse"])}
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as tmp,
        KnowledgeBase.open(Path(tmp) / "store", settings=Settings()) as kb,
    ):
        batch = []
        for name in DATASETS:
            path = args.data / name / "trajectories.json"
            for record in read_records(path):
                exp = from_openai(record, source=str(path), domain=name)
                exp.provenance.source_id = f"{name}:{record['task_id']}"
                batch.append(exp)
        kb.add_experiences(batch)
        loaded = time.perf_counter() - started
        records = {e.id: e for e in kb.store.records(kb.namespace).iter_experiences()}
        no_gold = sorted(i for i, e in records.items() if not e.gold_actions)
        queries: dict[str, Experience] = {}
        for exp in records.values():
            if exp.gold_actions and exp.provenance.source_id:
                queries.setdefault(exp.provenance.source_id, exp)
        if args.quick:
            queries = dict(sorted(queries.items())[::2])
        per_run: dict[str, dict[str, dict[str, float]]] = {}
        timings: dict[str, float] = {}
        for run, options in runs.items():
            scores: dict[str, dict[str, list[float]]] = {
                d: {"p@1": [], "p@3": [], "ndcg@5": []} for d in DATASETS
            }
            t0 = time.perf_counter()
            for source_id, query in sorted(queries.items()):
                gold = tools(query)
                pool = [
                    multiset_jaccard(gold, tools(e))
                    for e in records.values()
                    if e.outcome.value == "success"
                    and e.gold_actions
                    and e.provenance.source_id != source_id
                ]
                ideal = sorted(pool, reverse=True)[:5]
                bundle = kb.retrieve(
                    query.task,
                    k=5,
                    graph=False,
                    exclude_ids=no_gold,
                    exclude_source_ids=[source_id],
                    outcome_aware=False,
                    **options,
                )
                rels = [multiset_jaccard(gold, tools(records[s.id])) for s in bundle.strategies[:5]]
                rels += [0.0] * (5 - len(rels))
                row = scores[str(query.domain)]
                row["p@1"].append(rels[0])
                row["p@3"].append(sum(rels[:3]) / 3)
                row["ndcg@5"].append(ndcg(rels, ideal))
            timings[run] = round((time.perf_counter() - t0) / len(queries), 4)
            per_run[run] = {
                d: {m: round(sum(v) / len(v), 4) for m, v in metrics.items()}
                for d, metrics in scores.items()
            }
            for metric in ("p@1", "p@3", "ndcg@5"):
                per_run[run].setdefault("mean", {})[metric] = round(
                    sum(per_run[run][d][metric] for d in DATASETS) / len(DATASETS), 4
                )
            print(run, json.dumps(per_run[run]), flush=True)
    best_single = {
        scope: {
            m: max(per_run[r][scope][m] for r in ("vector", "lexical"))
            for m in ("p@1", "p@3", "ndcg@5")
        }
        for scope in (*DATASETS, "mean")
    }
    gains = {
        run: {
            scope: {
                m: round(per_run[run][scope][m] - best_single[scope][m], 4)
                for m in ("p@1", "p@3", "ndcg@5")
            }
            for scope in (*DATASETS, "mean")
        }
        for run in FUSED
    }
    never_worse = {
        run: {d: per_run[run][d]["ndcg@5"] >= best_single[d]["ndcg@5"] for d in DATASETS}
        for run in FUSED
    }
    for run in FUSED:
        print(f"{run}: nDCG@5 >= best single signal per domain: {never_worse[run]}")
    result = {
        "benchmark": "leave-one-task-out retrieve() on tau-airline + tau-retail, one store",
        "relevance": "Jaccard of gold-action tool multisets; p@k = mean relevance of the top k",
        "queries": {d: sum(1 for q in queries.values() if q.domain == d) for d in DATASETS},
        "store": {"experiences": len(records), "without_gold_actions": len(no_gold)},
        "runs": per_run,
        "gain_over_best_single_mode": gains,
        "fused_ndcg@5_at_least_best_single_per_domain": never_worse,
        "quick": bool(args.quick),
        "seconds_per_query": timings,
        "import_seconds": round(loaded, 1),
        "model": kb.model_name,
        "weights": vars(kb.weights),
        "python": platform.python_version(),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
