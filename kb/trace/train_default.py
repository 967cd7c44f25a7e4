"""Train the shipped tracer model (``kb/trace/default_model.json``).

Run from the repository root: ``python -m kb.trace.train_default`` (data from ``../shared/data``),
or ``--data DIR`` for another folder holding ``tau-airline/`` and ``tau-retail/``. Two stages:

1. a format-2 model (:mod:`kb.trace.fit`) on synthetic failures: faults injected
   (:mod:`kb.trace.synth`) into templated multi-agent runs of the train split
   (:mod:`kb.trace.teams`) and into the tau-airline and tau-retail successes (none of a labelled
   task); temperatures fitted on faults of the *heldout* split (other domains, agent names and
   wording), the shift a tracer meets on new logs;
2. fine-tuned on the human-labelled tau-retail failures (``failure_labels.json``).

It checks the model against the heuristic (step and agent accuracy) on the held-out faults and on
the tau-retail labels (leave-one-out: fine-tuned on the other labels; the heuristic given the
nearest successes as references, as a store gives it), and records both in ``meta["validation"]``;
``meta["beats_heuristic"]`` (read by :func:`kb.trace.preferred_model`) is true only when it is
ahead on step accuracy and not behind on agent accuracy in both. About 5 to 10 minutes on 2 CPU
cores, most of it embedding the texts once.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kb.errors import ImportFailed
from kb.importers import iter_experiences
from kb.models import ExperienceCreate, Outcome
from kb.trace.features import words_in
from kb.trace.labels import FailureLabel, read_labels, split_by_trajectory
from kb.trace.learned import DEFAULT_MODEL_PATH, LearnedModel

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
DEFAULT_DATA = DATA_ROOT / "tau-retail"
TEAM_RUNS = {"train": 200, "heldout": 90}
PER_SUCCESS = {"team": 3, "chat": 4}


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


def load_experiences(path: Path) -> list[ExperienceCreate]:
    """Every trajectory of a ``trajectories.json``."""
    out = []
    for _, item in iter_experiences(path):
        if isinstance(item, ImportFailed):
            raise item
        out.append(item)
    return out


def load_labelled(data_dir: Path) -> LabelledSet:
    """Import ``trajectories.json`` and match ``failure_labels.json`` to it by trajectory id."""
    experiences: dict[str, ExperienceCreate] = {}
    for number, item in enumerate(load_experiences(data_dir / "trajectories.json"), start=1):
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


def labelled_failures(data: LabelledSet) -> list[ExperienceCreate]:
    """The labelled failures with the label as their attribution (``method="label"``)."""
    return [e.model_copy(update={"attribution": label.attribution()}) for e, label in data.examples]


def synthetic_examples(
    data_root: Path,
    *,
    splits: tuple[str, ...] = ("train", "heldout"),
    chat: tuple[str, ...] = ("tau-airline", "tau-retail"),
    exclude_tasks: set[str] | None = None,
    seed: int = 0,
    team_runs: dict[str, int] | None = None,
) -> tuple[list[ExperienceCreate], dict[str, Any]]:
    """Synthetic labelled failures and a summary (counts, confirmed by replay / gold actions)."""
    from kb.trace.synth import SynthReport, synthesize
    from kb.trace.teams import generate_team_logs

    runs = team_runs or TEAM_RUNS
    report = SynthReport()
    out: list[ExperienceCreate] = []
    for k, split in enumerate(splits):
        logs = generate_team_logs(runs[split], seed=seed + k, split=split)
        out += synthesize(logs, seed=seed + k, per_success=PER_SUCCESS["team"], report=report)
    for k, name in enumerate(chat):
        path = data_root / name / "trajectories.json"
        if not path.is_file():
            continue
        successes = [
            e
            for e in load_experiences(path)
            if e.outcome == Outcome.success and e.task not in (exclude_tasks or set())
        ]
        out += synthesize(
            successes, seed=seed + 10 + k, per_success=PER_SUCCESS["chat"], report=report
        )
    summary = {
        "failures": report.made,
        "by_fault": report.by_fault,
        "confirmed": report.confirmed,
        "unconfirmed": report.unconfirmed,
        "dropped_no_flip": report.no_flip,
    }
    return out, summary


def train_default(
    data_root: Path = DATA_ROOT,
    out: Path = DEFAULT_MODEL_PATH,
    *,
    seed: int = 0,
    log: Any = print,
    embeddings: Path | None = None,
) -> LearnedModel:
    """Train on synthetic failures and the tau-retail labels; write the model to ``out``.

    ``embeddings``: an ``.npz`` of texts and vectors already made by the same embedder (as
    ``benchmarks/bench_tracer.py --cache`` writes), so that they are not computed again.
    """
    import numpy as np

    from kb.embeddings import SentenceTransformerEmbedder
    from kb.trace.design import EmbedCache
    from kb.trace.fit import FINE_TUNE, FitConfig, FitReport, Trainer, examples_from
    from kb.trace.learned import DEFAULT_EMBEDDER

    started = time.perf_counter()
    retail = load_labelled(data_root / "tau-retail")
    real = labelled_failures(retail)
    exclude = {e.task for e in real}
    synthetic, summary = synthetic_examples(
        data_root, splits=("train",), exclude_tasks=exclude, seed=seed
    )
    held, held_summary = synthetic_examples(data_root, splits=("heldout",), chat=(), seed=seed)
    log(
        f"{len(synthetic)} synthetic failures to train on, {len(held)} held-out ones to "
        f"calibrate on, {len(real)} labelled tau-retail failures to fine-tune on"
    )
    embedder = SentenceTransformerEmbedder(DEFAULT_EMBEDDER)
    cache = EmbedCache(embedder.encode)
    if embeddings is not None and embeddings.is_file():  # texts embedded before (a dev speed-up)
        data = np.load(embeddings, allow_pickle=False)
        cache.vectors.update(zip(data["texts"].tolist(), data["vectors"], strict=True))
    trainer = Trainer(cache, embedder=DEFAULT_EMBEDDER, log=log)
    report = FitReport()
    examples, calibration = examples_from(synthetic), examples_from(held)
    model = trainer.fit(
        examples,
        config=FitConfig(seed=seed, val_fraction=0.0),
        validation=calibration,
        report=report,
    )
    real_examples = examples_from(real)
    comparison = {
        "heldout_synthetic": _compare_with_heuristic(
            trainer,
            [model] * len(calibration),
            calibration,
            "calibration set (held-out split; temperatures fitted on it)",
        ),
        "tau_retail_real": _compare_with_heuristic(
            trainer,
            [
                trainer.fit(
                    [e for j, e in enumerate(real_examples) if j != k], config=FINE_TUNE, base=model
                )
                for k in range(len(real_examples))
            ],
            real_examples,
            "tau-retail labels, leave-one-out (fine-tuned on the other labels)",
            references=retail,
        ),
    }
    tuned = trainer.fit(examples_from(real), config=FINE_TUNE, base=model)
    seconds = time.perf_counter() - started
    tuned.meta = {
        **model.meta,
        "script": "python -m kb.trace.train_default",
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {
            "train": "kb.trace.teams train split, tau-airline and tau-retail successes",
            "calibration": "kb.trace.teams heldout split (other domains, names, wording)",
            "fine_tune": "tau-retail failure_labels.json",
        },
        "synthetic": summary,
        "calibration_set": held_summary,
        "labels": len(real),
        "labels_without_trajectory": [label.trajectory_id for label in retail.missing],
        "validation": comparison,
        "beats_heuristic": all(
            c["learned"]["step"] > c["heuristic"]["step"]
            and c["learned"]["agent"] >= c["heuristic"]["agent"]
            for c in comparison.values()
        ),
        "seconds": round(seconds, 1),
        "fit_seconds": {k: round(v, 1) for k, v in report.seconds.items()},
    }
    tuned.save(out)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) in {seconds:.0f} s")
    return tuned


def _compare_with_heuristic(
    trainer: Any,
    models: list[LearnedModel],
    examples: list[Any],
    what: str,
    *,
    references: LabelledSet | None = None,
) -> dict[str, Any]:
    """Step and agent accuracy of the models (one per example: leave-one-out) and of the
    heuristic (given the nearest successes as references when ``references`` is given)."""
    import numpy as np

    from kb.trace import heuristic
    from kb.trace.learned import build_trace, calibrated

    hits = np.zeros((2, 2))
    for model, e in zip(models, examples, strict=True):
        (scores,) = trainer.raw_scores(model, [e])
        probs = calibrated(e.experience, scores, model.temperature)
        ours = build_trace(
            e.experience, probs, model.agent_shares(e.experience, probs), method="learned"
        ).attribution
        refs = references.nearest_successes(e.experience) if references is not None else ()
        theirs = heuristic.attribute(e.experience, references=refs)
        for row, a in enumerate((ours, theirs)):
            hits[row, 0] += a.step == e.step
            hits[row, 1] += (a.agent or "").lower() == e.agent.lower()
    n = max(1, len(examples))
    return {
        "examples": len(examples),
        "set": what,
        "learned": {
            "step": round(float(hits[0, 0]) / n, 4),
            "agent": round(float(hits[0, 1]) / n, 4),
        },
        "heuristic": {
            "step": round(float(hits[1, 0]) / n, 4),
            "agent": round(float(hits[1, 1]) / n, 4),
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DATA_ROOT, help="folder with tau-* folders")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--embeddings", type=Path, default=None, help="a cache of embeddings (.npz)"
    )
    args = parser.parse_args(argv)
    train_default(args.data, args.out, seed=args.seed, embeddings=args.embeddings)


if __name__ == "__main__":
    main()
