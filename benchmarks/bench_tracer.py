"""Failure-attribution accuracy on tau-retail: heuristic and learned back ends vs baselines.

Target: the root-cause failure of each labelled trajectory (27 of the 29 labels have one). Metrics:
step accuracy (exact, and within one step) and agent accuracy. The learned back end is scored by
leave-one-out cross-validation (trained on the other 26 labelled trajectories); the majority
baselines are leave-one-out as well; the random baseline is the expected accuracy of a uniform
pick. References are the three successes whose task text is closest (the task's own gold actions
count too, as the importer keeps them). Rows marked ``no refs`` use no reference at all, as for a
multi-agent log.

Run: ``python benchmarks/bench_tracer.py [--data DIR]``; writes ``benchmarks/results/tracer.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kb.models import ExperienceCreate  # noqa: E402
from kb.trace import heuristic  # noqa: E402
from kb.trace.features import extract, role_of  # noqa: E402
from kb.trace.learned import fit_matrices  # noqa: E402
from kb.trace.train_default import DEFAULT_DATA, load_labelled  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "tracer.json"


def agent_of(experience: ExperienceCreate, step: int) -> str:
    s = experience.steps[step]
    return (s.agent or s.role or "").lower()


def score_rows(preds: list[tuple[int, str]], targets: list[tuple[int, str]]) -> dict[str, float]:
    n = len(targets)
    return {
        "step_exact": sum(p[0] == t[0] for p, t in zip(preds, targets, strict=True)) / n,
        "step_within_1": sum(abs(p[0] - t[0]) <= 1 for p, t in zip(preds, targets, strict=True))
        / n,
        "agent": sum(p[1] == t[1] for p, t in zip(preds, targets, strict=True)) / n,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description="failure tracer benchmark")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    data = load_labelled(args.data)
    exps = [e for e, _ in data.examples]
    targets = [(label.step, (label.agent or "").lower()) for _, label in data.examples]
    refs = [data.nearest_successes(e) for e in exps]
    with_refs = [extract(e, references=r) for e, r in zip(exps, refs, strict=True)]
    no_refs = [extract(e, use_references=False) for e in exps]
    roles = [[role_of(s) for s in e.steps] for e in exps]
    results: dict[str, dict[str, float]] = {}

    def predict(scores: np.ndarray, e: ExperienceCreate) -> tuple[int, str]:
        step = int(np.argmax(scores))
        return step, agent_of(e, step)

    for name, mats in (("heuristic", with_refs), ("heuristic (no refs)", no_refs)):
        preds = [
            predict(heuristic.score(m, r)[0], e) for m, r, e in zip(mats, roles, exps, strict=True)
        ]
        results[name] = score_rows(preds, targets)

    def loo_learned(
        mats: list[np.ndarray], train_sets: list[list[np.ndarray]]
    ) -> list[tuple[int, str]]:
        preds = []
        for i, e in enumerate(exps):
            train_m, train_t = [], []
            for j in range(len(exps)):
                if j != i:
                    for m in train_sets:
                        train_m.append(m[j])
                        train_t.append(targets[j][0])
            model = fit_matrices(train_m, train_t)
            scores = model.scores(mats[i])
            scores[[k for k, r in enumerate(roles[i]) if r == "system"]] -= 10.0
            preds.append(predict(scores, e))
        return preds

    results["learned (LOO)"] = score_rows(loo_learned(with_refs, [with_refs, no_refs]), targets)
    results["learned (LOO, no refs)"] = score_rows(
        loo_learned(no_refs, [with_refs, no_refs]), targets
    )

    # baselines
    exact, within, agent = [], [], []
    exact_a, within_a, agent_a = [], [], []
    for e, (t, a), r in zip(exps, targets, roles, strict=True):
        n = len(e.steps)
        near = [j for j in range(n) if abs(j - t) <= 1]
        exact.append(1 / n)
        within.append(len(near) / n)
        agent.append(sum(agent_of(e, j) == a for j in range(n)) / n)
        acting = [j for j in range(n) if r[j] in {"actor", "user"}]
        exact_a.append((t in acting) / len(acting))
        within_a.append(sum(j in acting for j in near) / len(acting))
        agent_a.append(sum(agent_of(e, j) == a for j in acting) / len(acting))
    results["random (all steps, expected)"] = {
        "step_exact": statistics.fmean(exact),
        "step_within_1": statistics.fmean(within),
        "agent": statistics.fmean(agent),
    }
    results["random (agent/user messages, expected)"] = {
        "step_exact": statistics.fmean(exact_a),
        "step_within_1": statistics.fmean(within_a),
        "agent": statistics.fmean(agent_a),
    }
    majority: dict[str, list[tuple[int, str]]] = {"index": [], "relpos": []}
    for i, e in enumerate(exps):
        others = [k for k in range(len(exps)) if k != i]
        top_agent = Counter(targets[k][1] for k in others).most_common(1)[0][0]
        top_index = Counter(targets[k][0] for k in others).most_common(1)[0][0]
        rel = statistics.median(targets[k][0] / (len(exps[k].steps) - 1) for k in others)
        n = len(e.steps)
        for key, step in (("index", min(top_index, n - 1)), ("relpos", round(rel * (n - 1)))):
            majority[key].append((step, top_agent))
    results["majority step index (LOO)"] = score_rows(majority["index"], targets)
    results["majority relative position (LOO)"] = score_rows(majority["relpos"], targets)

    report: dict[str, object] = {
        "benchmark": "failure attribution, root-cause step and agent",
        "data": str(args.data.name),
        "labelled_trajectories": len(exps),
        "labels_without_trajectory": [label.trajectory_id for label in data.missing],
        "mean_steps": statistics.fmean(len(e.steps) for e in exps),
        "agents_in_targets": dict(Counter(a for _, a in targets)),
        "results": {k: {m: round(v, 4) for m, v in row.items()} for k, row in results.items()},
        "notes": (
            "learned: logistic regression over per-step features, leave-one-out (trained on the "
            "other labelled trajectories, with and without reference features). Agent accuracy "
            "is the agent of the chosen step against the labelled agent (case-insensitive)."
        ),
        "seconds": round(time.perf_counter() - started, 2),
        "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    width = max(len(k) for k in results)
    print(f"{'method':{width}}  exact  ±1    agent")
    for name, row in results.items():
        print(
            f"{name:{width}}  {row['step_exact']:.3f}  {row['step_within_1']:.3f}  {row['agent']:.3f}"
        )
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
