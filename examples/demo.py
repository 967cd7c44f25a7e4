"""Demo: fill a store from the sample trajectories in examples/data and ask it for help.

Run:  python examples/demo.py [--store DIR]

The sample (12 support-desk runs of an online shop, 8 successes and 4 failures, OpenAI chat format)
was written for this project. The demo imports it, then for a few new tasks shows what worked
before beside what failed before, and the context block an agent would receive before it starts.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from kb import KnowledgeBase

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "data" / "shop_trajectories.json"
QUERIES = [
    "A customer's toaster arrived damaged and they want their money back",
    "Customer asks to cancel an order that may already have shipped",
    "Send the parcel to a different street address",
]


def show(kb: KnowledgeBase, query: str) -> None:
    print(f"\n=== task: {query}")
    successes = kb.search(query, k=2, kind="experience", outcome="success")
    failures = kb.search(query, k=2, kind="experience", outcome="failure")
    print("  worked before:")
    for hit in successes:
        tools = " -> ".join(hit.record["signature"]) if hit.record else ""
        print(f"    [{hit.id}] {hit.title[:70]}\n        tools: {tools}")
    print("  failed before (pitfalls):")
    for hit in failures:
        steps = kb.get_experience(hit.id).steps
        error = next((s.error for s in steps if s.error), "no error recorded")
        print(f"    [{hit.id}] {hit.title[:70]}\n        error: {error[:100]}")
    if hasattr(kb, "retrieve"):
        bundle = kb.retrieve(query, k=3, budget_tokens=350)
        print(f"  context block for the agent ({bundle.tokens} tokens):")
        print("\n".join("    " + line for line in bundle.context.splitlines()))


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
            for query in QUERIES:
                show(kb, query)


if __name__ == "__main__":
    main()
