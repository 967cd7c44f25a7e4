"""Demo: fill a store from the sample trajectories in examples/data and ask it for help.

Run:  python examples/demo.py [--store DIR]

The sample (12 support-desk runs of an online shop, 8 successes and 4 failures, OpenAI chat format)
was written for this project. The demo imports it (each run's strategy, plan and lessons are
distilled from its steps as it is stored), links a failed refund to a successful one (its lessons
then say "instead of X, do Y"), then for a few new tasks shows what worked before (the distilled
decision points) beside what failed before (the failing step and its error), and the context block
an agent would receive before it starts.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from kb import KnowledgeBase
from kb.models import Experience

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "data" / "shop_trajectories.json"
QUERIES = [
    "A customer's toaster arrived damaged and they want their money back",
    "Customer asks to cancel an order that may already have shipped",
    "Send the parcel to a different street address",
]


def label(exp: Experience, field: str) -> str:
    """Who wrote a field: distilled from the run, or written by a person."""
    return "distilled" if exp.distilled and field in exp.distilled.fields else "written"


def show(kb: KnowledgeBase, query: str) -> None:
    print(f"\n=== task: {query}")
    successes = kb.search(query, k=2, kind="experience", outcome="success")
    failures = kb.search(query, k=2, kind="experience", outcome="failure")
    print("  worked before:")
    for hit in successes:
        exp = kb.get_experience(hit.id)
        points = (exp.strategy or "").split(" | ")[1:2] or ["(no strategy)"]
        print(f"    [{hit.id}] {hit.title[:70]}")
        print(f"        strategy ({label(exp, 'strategy')}): {points[0][:160]}")
    print("  failed before (pitfalls):")
    for hit in failures:
        exp = kb.get_experience(hit.id)
        print(f"    [{hit.id}] {hit.title[:70]}")
        for lesson in exp.lessons[:3]:
            print(f"        lesson ({label(exp, 'lessons')}): {lesson[:160]}")
    bundle = kb.retrieve(query, k=3, budget_tokens=900)
    print(f"  context block for the agent ({bundle.tokens} tokens):")
    print("\n".join("    " + line for line in bundle.context.splitlines()))


def link_a_repair(kb: KnowledgeBase) -> None:
    """A failed refund and a successful one of the same kind: linking them (``repaired_by``, as
    ``kb trace`` does for runs of one task) re-distills the failure's lessons."""
    runs = {e.provenance.source_id: e for e in kb.list_experiences(limit=100)}
    failure, repair = runs["refund-3"], runs["refund-1"]
    kb.add_edge(failure.id, repair.id, "repaired_by")
    lessons = kb.get_experience(failure.id).lessons
    print(f"\nlinked {failure.id} (failed refund) repaired_by {repair.id}; its lessons now:")
    for lesson in lessons:
        print(f"    {lesson[:160]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", type=Path, default=None, help="store directory (default: a temp dir)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp) / "store"
        with KnowledgeBase.open(store) as kb:
            report = kb.import_file(SAMPLE)
            stats = kb.stats()
            print(
                f"imported {len(report.added)} trajectories into {store} "
                f"({stats.experiences_by_outcome})"
            )
            link_a_repair(kb)
            for query in QUERIES:
                show(kb, query)


if __name__ == "__main__":
    main()
