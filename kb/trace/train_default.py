"""Train the shipped default tracer model on the labelled tau-retail failures.

Run from the repository root: ``python -m kb.trace.train_default`` (data from ``../shared/data``)
or ``python -m kb.trace.train_default --data DIR`` where ``DIR`` holds ``trajectories.json`` and
``failure_labels.json``. Writes ``kb/trace/default_model.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from kb.errors import ImportFailed
from kb.importers import iter_experiences
from kb.models import ExperienceCreate, Outcome
from kb.trace.features import words_in
from kb.trace.labels import FailureLabel, read_labels, split_by_trajectory
from kb.trace.learned import DEFAULT_MODEL_PATH, LearnedModel, train

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "tau-retail"


@dataclass
class LabelledSet:
    """Labelled failures with their experiences, the successes beside them, and orphan labels."""

    examples: list[tuple[ExperienceCreate, FailureLabel]] = field(default_factory=list)
    successes: list[ExperienceCreate] = field(default_factory=list)
    missing: list[FailureLabel] = field(default_factory=list)

    def nearest_successes(self, experience: ExperienceCreate, k: int = 3) -> list[ExperienceCreate]:
        """The ``k`` successes whose task text overlaps most with this one's (never itself)."""
        words = words_in(experience.task)
        ranked = sorted(
            (s for s in self.successes if s is not experience),
            key=lambda s: -len(words & words_in(s.task)) / (len(words | words_in(s.task)) or 1),
        )
        return ranked[:k]


def load_labelled(data_dir: Path) -> LabelledSet:
    """Import ``trajectories.json`` and match ``failure_labels.json`` to it by trajectory id."""
    experiences: dict[str, ExperienceCreate] = {}
    for number, item in iter_experiences(data_dir / "trajectories.json"):
        if isinstance(item, ImportFailed):
            raise item
        experiences[item.provenance.source_id or str(number)] = item
    labels = read_labels(data_dir / "failure_labels.json")
    matched, missing = split_by_trajectory(labels, experiences)
    out = LabelledSet(missing=missing)
    out.successes = [e for e in experiences.values() if e.outcome == Outcome.success]
    for label in matched:
        experience = experiences[label.trajectory_id]
        if label.step < len(experience.steps):
            out.examples.append((experience, label))
        else:
            out.missing.append(label)
    return out


def train_default(data_dir: Path = DEFAULT_DATA, out: Path = DEFAULT_MODEL_PATH) -> LearnedModel:
    """Train on every labelled trajectory in ``data_dir`` and write the model to ``out``."""
    data = load_labelled(data_dir)
    model = train(
        [(e, label.step) for e, label in data.examples], references=data.nearest_successes
    )
    model.meta.update(
        {
            "data": data_dir.name,
            "labels_without_trajectory": [label.trajectory_id for label in data.missing],
            "script": "python -m kb.trace.train_default",
        }
    )
    model.save(out)
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    args = parser.parse_args(argv)
    train_default(args.data, args.out)
    print(f"wrote {args.out} ({len(load_labelled(args.data).examples)} labelled trajectories)")


if __name__ == "__main__":
    main()
