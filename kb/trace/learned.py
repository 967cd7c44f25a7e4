"""The learned back end: a logistic regression over per-step features, picking the top step.

Parameters are plain JSON (feature names, scaling, coefficients), never a pickle, so a model file
can be read, diffed and shipped inside the package. A default model trained on the labelled
tau-retail failures ships as ``default_model.json`` (see :mod:`kb.trace.train_default`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from kb.errors import Invalid, NotFound
from kb.models import Attribution, ExperienceCreate
from kb.trace.features import FEATURES, Embed, extract, role_of
from kb.trace.scoring import attribution_from_scores

DEFAULT_MODEL_PATH = Path(__file__).with_name("default_model.json")
FORMAT = "kb-tracer-logreg/1"
References = Callable[[ExperienceCreate], Sequence[ExperienceCreate]]


@dataclass
class LearnedModel:
    """A linear step scorer: ``score = ((x - mean) / scale) . coef + intercept``."""

    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """Per step and feature, the term each feature adds to the step's score."""
        x = self._align(features)
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return z * np.asarray(self.coef)[None, :]

    def scores(self, features: np.ndarray) -> np.ndarray:
        """The score of every step (higher = more likely the decisive mistake)."""
        return self.contributions(features).sum(axis=1) + self.intercept

    def _align(self, features: np.ndarray) -> np.ndarray:
        if list(self.features) == list(FEATURES):
            return features
        index = {name: i for i, name in enumerate(FEATURES)}
        out = np.zeros((features.shape[0], len(self.features)))
        for j, name in enumerate(self.features):
            if name in index:  # features this version no longer computes stay at 0
                out[:, j] = features[:, index[name]]
        return out

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON parameters."""
        return {
            "format": FORMAT,
            "features": list(self.features),
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "coef": [float(v) for v in self.coef],
            "intercept": float(self.intercept),
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LearnedModel:
        """Rebuild a model from :meth:`to_json` output; raises :class:`Invalid` on bad input."""
        if data.get("format") != FORMAT:
            raise Invalid(f"tracer model format {data.get('format')!r}; expected {FORMAT!r}")
        names = list(data.get("features") or [])
        for key in ("mean", "scale", "coef"):
            if len(data.get(key) or []) != len(names):
                raise Invalid(f"tracer model: {key} has not one value per feature")
        scale = [float(v) if float(v) > 0 else 1.0 for v in data["scale"]]
        return cls(
            features=names,
            mean=[float(v) for v in data["mean"]],
            scale=scale,
            coef=[float(v) for v in data["coef"]],
            intercept=float(data.get("intercept", 0.0)),
            meta=dict(data.get("meta") or {}),
        )

    def save(self, path: Path | str) -> Path:
        """Write the model as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path | str) -> LearnedModel:
        """Read a model written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise NotFound(f"{path}: no tracer model there (train one with `kb train-tracer`)")
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise Invalid(f"{path}: not valid JSON ({exc.msg})") from exc


@lru_cache(maxsize=1)
def default_model() -> LearnedModel | None:
    """The model shipped with the package, or None when the file is absent."""
    if not DEFAULT_MODEL_PATH.is_file():
        return None
    return LearnedModel.load(DEFAULT_MODEL_PATH)


def fit_matrices(
    matrices: Sequence[np.ndarray], targets: Sequence[int], *, c: float = 0.5
) -> LearnedModel:
    """Fit on precomputed feature matrices (one per trajectory) and target step indices."""
    from sklearn.linear_model import LogisticRegression

    rows, ys = [], []
    for matrix, target in zip(matrices, targets, strict=True):
        if not 0 <= target < matrix.shape[0]:
            continue
        y = np.zeros(matrix.shape[0])
        y[target] = 1.0
        rows.append(matrix)
        ys.append(y)
    if not rows:
        raise Invalid("no labelled steps to train the tracer on")
    x = np.vstack(rows)
    y_all = np.concatenate(ys)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    clf.fit((x - mean) / scale, y_all)
    return LearnedModel(
        features=list(FEATURES),
        mean=mean.tolist(),
        scale=scale.tolist(),
        coef=clf.coef_[0].tolist(),
        intercept=float(clf.intercept_[0]),
        meta={"matrices": len(rows), "steps": int(x.shape[0]), "C": c},
    )


def training_matrices(
    examples: Iterable[tuple[ExperienceCreate, int]],
    *,
    references: References | None = None,
    embed: Embed | None = None,
    drop_references: bool = True,
) -> tuple[list[np.ndarray], list[int]]:
    """Feature matrices and targets; with ``drop_references`` each example also appears once
    without reference features, so the model still ranks steps when no success is known."""
    matrices, targets = [], []
    for experience, target in examples:
        refs = references(experience) if references else ()
        matrices.append(extract(experience, references=refs, embed=embed))
        targets.append(target)
        if drop_references:
            matrices.append(extract(experience, embed=embed, use_references=False))
            targets.append(target)
    return matrices, targets


def train(
    examples: Iterable[tuple[ExperienceCreate, int]],
    *,
    references: References | None = None,
    embed: Embed | None = None,
    c: float = 0.5,
    drop_references: bool = True,
) -> LearnedModel:
    """Train a model on ``(failed experience, decisive step index)`` pairs.

    ``references(experience)`` may return the successes to compare each failure with.
    """
    matrices, targets = training_matrices(
        examples, references=references, embed=embed, drop_references=drop_references
    )
    return fit_matrices(matrices, targets, c=c)


def labelled_examples(
    experiences: Iterable[ExperienceCreate],
) -> list[tuple[ExperienceCreate, int]]:
    """The failures in a collection that carry a human label (``attribution.method == "label"``)."""
    out = []
    for experience in experiences:
        label = experience.attribution
        if (
            label is not None
            and label.method == "label"
            and label.step is not None
            and label.step < len(experience.steps)
        ):
            out.append((experience, label.step))
    return out


def attribute(
    experience: ExperienceCreate,
    *,
    model: LearnedModel | None = None,
    references: Sequence[ExperienceCreate] = (),
    embed: Embed | None = None,
) -> Attribution:
    """Blame the step the model scores highest (the default model when none is given)."""
    model = model or default_model()
    if model is None:
        raise NotFound(
            "no tracer model: train one with `kb train-tracer` or ship default_model.json"
        )
    features = extract(experience, references=references, embed=embed)
    scores = model.scores(features)
    for i, item in enumerate(experience.steps):
        if role_of(item) == "system":
            scores[i] -= 10.0
    return attribution_from_scores(
        experience,
        scores,
        method="learned",
        contributions=model.contributions(features) if model.features == list(FEATURES) else None,
    )
