"""Calibration of the relevance floors of ``retrieve`` (skills and pitfalls) on dev data.

A floor is the least cosine between the task and an item's stored vector for the item to be
offered. Each floor is set where it best separates relevant from irrelevant pairs (Youden's J:
the share of relevant pairs kept minus the share of irrelevant pairs kept, highest):

* skills: the MetaTool dev half (the same seeded split and sample as
  ``bench_skills_metatool.py``; the test half is never read): a query and its tool are relevant,
  the query and each other tool are not;
* pitfalls: tau-airline + tau-retail, every task with gold actions against every failed run of
  another task: relevant when their gold tool multisets overlap by Jaccard >= 0.5, irrelevant
  below 0.2 (in between is left out).

It also reports what the shipped floors (``kb.retrieval.FLOORS``) keep and what ``retrieve`` says
for "exchange a keyboard" in a store holding only an arithmetic skill.

Run: ``python benchmarks/bench_floors.py [--quick]``; writes ``benchmarks/results/floors.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_skills_metatool import SEED, load_tools  # noqa: E402
from kb.config import Settings  # noqa: E402
from kb.importers import from_openai, read_records  # noqa: E402
from kb.retrieval import FLOORS, multiset_jaccard  # noqa: E402
from kb.service import KnowledgeBase  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "floors.json"
GRID = [round(x, 3) for x in np.arange(0.0, 0.6, 0.01)]


def youden(relevant: np.ndarray, irrelevant: np.ndarray) -> dict[str, Any]:
    """The threshold of the grid with the highest share kept of relevant minus irrelevant."""
    best: dict[str, Any] = {}
    for t in GRID:
        tpr, fpr = float((relevant >= t).mean()), float((irrelevant >= t).mean())
        if not best or tpr - fpr > best["j"]:
            best = {"floor": t, "j": round(tpr - fpr, 4), "relevant_kept": round(tpr, 4)}
            best["irrelevant_kept"] = round(fpr, 4)
    return best


def kept(relevant: np.ndarray, irrelevant: np.ndarray, floor: float) -> dict[str, float]:
    return {
        "floor": floor,
        "relevant_kept": round(float((relevant >= floor).mean()), 4),
        "irrelevant_kept": round(float((irrelevant >= floor).mean()), 4),
    }


def unit(m: np.ndarray) -> np.ndarray:
    return m / np.linalg.norm(m, axis=-1, keepdims=True)


def skills(tmp: Path, sample: int) -> dict[str, Any]:
    data = DATA / "metatool"
    plugins = json.loads((data / "plugin_des.json").read_text())
    with (data / "all_clean_data.csv").open() as f:
        rows = [(r["Query"], r["Tool"]) for r in csv.DictReader(f)]
    order = list(range(len(rows)))
    random.Random(SEED).shuffle(order)
    dev = order[: len(order) // 2][:sample]
    with KnowledgeBase.open(tmp / "metatool", namespace="metatool") as kb:
        names = load_tools(kb, plugins)
        listed = kb.list_skills(limit=1000)
        by_name = {s.name: s.id for s in listed}
        ids = list(by_name.values())
        vectors = kb.store.items.vectors(ids)
        docs = unit(np.stack([vectors[i] for i in ids]))
        column = {by_name[n]: c for c, n in enumerate(by_name)}
        queries = unit(kb.embedder.encode([rows[i][0] for i in dev]))
        sims = queries @ docs.T
        mask = np.zeros_like(sims, dtype=bool)
        for r, i in enumerate(dev):
            mask[r, column[by_name[names[rows[i][1]]]]] = True
    relevant, irrelevant = sims[mask], sims[~mask]
    return {
        "pairs": {"relevant": int(relevant.size), "irrelevant": int(irrelevant.size)},
        "best": youden(relevant, irrelevant),
        "shipped": kept(relevant, irrelevant, FLOORS.skill),
    }


def pitfalls(tmp: Path) -> dict[str, Any]:
    with KnowledgeBase.open(tmp / "tau", settings=Settings()) as kb:
        batch = []
        for name in ("tau-airline", "tau-retail"):
            path = DATA / name / "trajectories.json"
            for record in read_records(path):
                exp = from_openai(record, source=str(path), domain=name)
                exp.provenance.source_id = f"{name}:{record['task_id']}"
                batch.append(exp)
        kb.add_experiences(batch)
        records = [e for e in kb.store.records(kb.namespace).iter_experiences() if e.gold_actions]
        failed = [e for e in records if e.outcome.value != "success"]
        queries: dict[str, Any] = {}
        for e in records:
            queries.setdefault(str(e.provenance.source_id), e)
        vectors = kb.store.items.vectors([e.id for e in failed])
        docs = unit(np.stack([vectors[e.id] for e in failed]))
        tasks = list(queries.values())
        sims = unit(kb.embedder.encode([q.task for q in tasks])) @ docs.T
    relevant, irrelevant = [], []
    for r, query in enumerate(tasks):
        gold = [str(a.get("name")) for a in query.gold_actions or []]
        for c, exp in enumerate(failed):
            if exp.provenance.source_id == query.provenance.source_id:
                continue
            overlap = multiset_jaccard(gold, [str(a.get("name")) for a in exp.gold_actions or []])
            if overlap >= 0.5:
                relevant.append(sims[r, c])
            elif overlap < 0.2:
                irrelevant.append(sims[r, c])
    rel, irr = np.asarray(relevant), np.asarray(irrelevant)
    return {
        "pairs": {"relevant": int(rel.size), "irrelevant": int(irr.size)},
        "best": youden(rel, irr),
        "shipped": kept(rel, irr, FLOORS.pitfall),
    }


def keyboard(tmp: Path) -> dict[str, Any]:
    add = {
        "name": "add-numbers",
        "description": "Add two integers and return their sum.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        },
        "steps": ["Take a and b.", "Return a + b."],
        "status": "approved",
    }
    with KnowledgeBase.open(tmp / "keyboard") as kb:
        kb.add_skill(add)
        offered = [s.id for s in kb.retrieve("exchange a keyboard").skills]
        vector = kb.store.items.vectors([kb.get_skill("add-numbers").id])
        cosine = float(
            unit(kb.embedder.encode(["exchange a keyboard"]))[0] @ unit(next(iter(vector.values())))
        )
    return {
        "task": "exchange a keyboard",
        "cosine_to_add_numbers": round(cosine, 4),
        "offered": offered,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="calibrate the relevance floors of retrieve")
    parser.add_argument("--quick", action="store_true", help="300 MetaTool dev queries")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not DATA.exists():
        sys.exit(f"{DATA} not found: this benchmark needs ../shared/data")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "benchmark": "relevance floors of retrieve: cosine(task, item vector), Youden's J",
            "skills_metatool_dev": skills(Path(tmp), 300 if args.quick else 1000),
            "pitfalls_tau": pitfalls(Path(tmp)),
            "keyboard": keyboard(Path(tmp)),
            "shipped": {"skill": FLOORS.skill, "pitfall": FLOORS.pitfall},
            "seconds": round(time.perf_counter() - started, 1),
        }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
