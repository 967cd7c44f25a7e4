"""The demo on real data: the 200 tau-bench airline trajectories in ../shared/data/tau-airline.

Run:  python examples/tau_airline.py [--store DIR] [--limit N]

Imports the trajectories (gpt-4o, 84 successes), then for a few airline tasks shows what worked
before beside what failed before (with the traced cause of each failure).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from kb import KnowledgeBase

DATA = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "data"
    / "tau-airline"
    / "trajectories.json"
)
QUERIES = [
    "I need to change my flight to a later date and keep the same cabin",
    "Cancel my reservation and refund it to the original payment method",
    "Add a checked bag to my existing booking",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", type=Path, default=None, help="store directory (default: a temp dir)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="import only the first N trajectories"
    )
    args = parser.parse_args()
    if not DATA.exists():
        print(f"skipped: {DATA} is not here (the third-party data lives in ../shared/data)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        source = DATA
        if args.limit:
            source = Path(tmp) / "sample.json"
            source.write_text(json.dumps(json.loads(DATA.read_text())[: args.limit]))
        with KnowledgeBase.open(args.store or Path(tmp) / "store") as kb:
            report = kb.import_file(source)
            print(f"imported {len(report.added)} trajectories: {kb.stats().experiences_by_outcome}")
            for query in QUERIES:
                print(f"\n=== task: {query}")
                for outcome in ("success", "failure"):
                    for hit in kb.search(query, k=2, kind="experience", outcome=outcome):
                        line = f"  {outcome:7s} [{hit.id}] {hit.title[:90]}"
                        if outcome == "failure":
                            cause = kb.trace(hit.id)
                            line += f"\n          cause: {cause.reason[:120]} ({cause.method}, {cause.confidence:.2f})"
                        else:
                            line += "\n          tools: " + " -> ".join(
                                hit.record["signature"][:8] if hit.record else []
                            )
                        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
