"""Skill mining on real trajectories (../shared/data/tau-airline and tau-retail).

For each data set: import the trajectories into a fresh store, mine draft skills from the
successful ones (``KnowledgeBase.mine_skills``), and report the number of candidates and the
coverage: the share of successful trajectories that contain at least one mined tool sequence.
Every candidate (name, support, tool pattern, parameters, guidance) is written out for hand-checking.

Run: python benchmarks/bench_mining.py [--min-support 3] [--min-length 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from kb import KnowledgeBase
from skills import Candidate, coverage

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def run(dataset: str, *, min_support: int, min_length: int, max_length: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, KnowledgeBase.open(Path(tmp) / "store") as kb:
        kb.import_file(DATA / dataset / "trajectories.json")
        started = time.perf_counter()
        actions = kb.mine_skills(
            min_support=min_support, min_length=min_length, max_length=max_length
        )
        seconds = time.perf_counter() - started
        traces = []
        for exp in kb.records.iter_experiences(outcome="success"):
            calls = [
                s.model_dump(mode="json") for s in exp.steps if s.tool and s.kind == "tool_call"
            ]
            traces.append((exp.id, calls))
        candidates = [
            Candidate(
                skill={},
                support=a.support or 0,
                source_ids=a.sources,
                pattern=a.detail.split(" -> "),
            )
            for a in actions
        ]
        stored = [kb.get_skill(a.name) for a in actions if a.id]
        derived = sum(len(kb.edges(s.id, kinds={"derived_from"})) for s in stored)
        return {
            "successful_trajectories": len(traces),
            "candidates": len(actions),
            "coverage": round(coverage(candidates, traces), 4),
            "derived_from_edges": derived,
            "mining_seconds": round(seconds, 2),
            "skills": [
                {
                    "name": s.name,
                    "support": next(a.support for a in actions if a.id == s.id),
                    "pattern": next(a.detail for a in actions if a.id == s.id),
                    "parameters": sorted(s.parameters.get("properties", {})),
                    "scope": s.scope,
                    "steps": s.steps,
                }
                for s in stored
            ],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-support", type=int, default=3)
    parser.add_argument("--min-length", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mining.json")
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} not found: this benchmark needs ../shared/data")
    results: dict[str, object] = {
        "settings": {
            "min_support": args.min_support,
            "min_length": args.min_length,
            "max_length": args.max_length,
        },
    }
    for dataset in ("tau-airline", "tau-retail"):
        result = run(
            dataset,
            min_support=args.min_support,
            min_length=args.min_length,
            max_length=args.max_length,
        )
        results[dataset] = result
        print(
            f"{dataset}: {result['candidates']} candidates from {result['successful_trajectories']} "
            f"successful trajectories, coverage {result['coverage']:.1%}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
