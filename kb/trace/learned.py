"""The learned back end: a trained step scorer, with calibrated confidence and agent shares.

Two formats, both plain JSON (never a pickle), so a model file can be read, diffed and shipped:

* ``kb-tracer-logreg/1``: a linear scorer over the hand-made features of
  :mod:`kb.trace.features` (what earlier versions trained; still read and scored);
* ``kb-tracer/2``: a listwise (softmax over the steps of a log) linear scorer over those features,
  the structural features of :mod:`kb.trace.design` and projected sentence embeddings of each step
  and its neighbours; a per-agent model for blame by contribution (:mod:`kb.trace.blame`); a
  temperature for each, fitted on held-out synthetic failures; and the confidence below which the
  answer is ``unknown``. Trained by :mod:`kb.trace.fit`; the shipped one is
  ``default_model.json`` (``python -m kb.trace.train_default``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from kb.config import DEFAULT_MODEL
from kb.errors import Invalid, NotFound
from kb.models import Attribution, ExperienceCreate
from kb.trace.features import FEATURES, Embed, extract, role_of
from kb.trace.scoring import attribution_from_scores

DEFAULT_MODEL_PATH = Path(__file__).with_name("default_model.json")
DEFAULT_EMBEDDER = DEFAULT_MODEL
FORMAT = "kb-tracer-logreg/1"
FORMAT_TEXT = "kb-tracer/2"


@dataclass
class LearnedModel:
    """A linear step scorer: ``score = ((x - mean) / scale) . coef + intercept``.

    ``x`` is the hand-made feature row of a step (format 1), or the full design row of
    :meth:`featurize` (format 2: hand-made, structural and text features).
    """

    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    embedder: str | None = None
    projection: dict[str, list[Any]] | None = None  # {"mean": [d], "components": [[d] * p]}
    agent: dict[str, list[Any]] | None = None  # {"features", "mean", "scale", "coef"}
    temperature: float = 1.0
    agent_temperature: float = 1.0
    unknown_below: float = 0.0
    hidden: dict[str, list[Any]] | None = None  # {"W": [[h] * k], "b": [h], "v": [h]}

    @property
    def is_text(self) -> bool:
        """Whether the model reads text (format 2) rather than hand-made features only."""
        return self.projection is not None

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """Per step and feature, the term each feature adds to the step's score."""
        x = self._align(features)
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return z * np.asarray(self.coef)[None, :]

    def scores(self, features: np.ndarray) -> np.ndarray:
        """The score of every step (higher = more likely the decisive mistake)."""
        out = self.contributions(features).sum(axis=1) + self.intercept
        if self.hidden is not None:
            z = (self._align(features) - np.asarray(self.mean)) / np.asarray(self.scale)
            w = np.asarray(self.hidden["W"], dtype=np.float64)
            a = np.maximum(z @ w + np.asarray(self.hidden["b"]), 0.0)
            out = out + a @ np.asarray(self.hidden["v"], dtype=np.float64)
        return np.asarray(out)

    def _align(self, features: np.ndarray) -> np.ndarray:
        if features.shape[1] == len(self.features):
            return features
        if features.shape[1] != len(FEATURES):
            raise Invalid(
                f"feature matrix has {features.shape[1]} columns; the model expects "
                f"{len(self.features)} (or {len(FEATURES)} hand-made ones)"
            )
        index = {name: i for i, name in enumerate(FEATURES)}
        out = np.tile(np.asarray(self.mean, dtype=np.float64), (features.shape[0], 1))
        for j, name in enumerate(self.features):
            if name in index:  # features the matrix lacks stay at their mean (no effect)
                out[:, j] = features[:, index[name]]
        return out

    # -- format 2 ------------------------------------------------------------------------------
    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Sentence embeddings -> the model's low-dimensional text space."""
        if self.projection is None:
            raise Invalid("this tracer model reads no text")
        mean = np.asarray(self.projection["mean"], dtype=np.float32)
        components = np.asarray(self.projection["components"], dtype=np.float32)
        if vectors.shape[1] != components.shape[1]:
            raise Invalid(
                f"embeddings have {vectors.shape[1]} dimensions; the tracer model was trained "
                f"on {components.shape[1]} ({self.embedder})"
            )
        return np.asarray((vectors - mean) @ components.T, dtype=np.float64)

    def featurize(
        self,
        experience: ExperienceCreate,
        *,
        references: Sequence[ExperienceCreate] = (),
        embed: Embed | None = None,
    ) -> np.ndarray:
        """The design matrix the model scores (one row per step)."""
        if not self.is_text:
            return extract(experience, references=references)
        from kb.trace.design import dense, encode, text_blocks

        text = encode(experience, self.embed_function(embed))
        return np.hstack(
            [dense(experience, text=text, references=references), text_blocks(text, self.project)]
        )

    def embed_function(self, embed: Embed | None) -> Embed:
        """The embedder to use: ``embed`` when it is the model's own (or anonymous), else the
        model's, loaded offline (the bundled model)."""
        given = _embedder_name(embed)
        if embed is not None and (given is None or given == self.embedder):
            return embed
        if self.embedder == DEFAULT_EMBEDDER:
            return _bundled_embedder().encode
        raise Invalid(
            f"this tracer model needs the embedder {self.embedder!r}; pass its encode function"
        )

    def step_probs(
        self,
        experience: ExperienceCreate,
        *,
        references: Sequence[ExperienceCreate] = (),
        embed: Embed | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(calibrated probability per step, design matrix)``; system steps get 0."""
        matrix = self.featurize(experience, references=references, embed=embed)
        scores = self.scores(matrix)
        return calibrated(experience, scores, self.temperature), matrix

    def agent_shares(self, experience: ExperienceCreate, probs: np.ndarray) -> dict[str, float]:
        """Each agent's share of the responsibility, given the step probabilities."""
        from kb.trace.blame import shares

        if self.agent is None:
            return shares(experience, probs)
        return shares(
            experience,
            probs,
            coef=self.agent["coef"],
            mean=self.agent["mean"],
            scale=self.agent["scale"],
            temperature=self.agent_temperature,
        )

    def explain(
        self,
        experience: ExperienceCreate,
        *,
        references: Sequence[ExperienceCreate] = (),
        embed: Embed | None = None,
    ) -> Trace:
        """The full answer: attribution, step probabilities and agent shares."""
        if not experience.steps:
            raise Invalid("the experience has no steps to attribute")
        probs, matrix = self.step_probs(experience, references=references, embed=embed)
        shares = self.agent_shares(experience, probs)
        contributions = self.contributions(matrix)
        return build_trace(
            experience,
            probs,
            shares,
            method="learned",
            contributions=contributions,
            names=self.features,
            unknown_below=self.unknown_below,
        )

    def trace(
        self,
        experience: ExperienceCreate,
        *,
        references: Sequence[ExperienceCreate] = (),
        embed: Embed | None = None,
    ) -> Attribution:
        """Attribute the failure of ``experience`` (see :meth:`explain`)."""
        return self.explain(experience, references=references, embed=embed).attribution

    # -- files ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Plain-JSON parameters."""
        out: dict[str, Any] = {
            "format": FORMAT_TEXT if self.is_text else FORMAT,
            "features": list(self.features),
            "mean": _round(self.mean),
            "scale": _round(self.scale),
            "coef": _round(self.coef),
            "intercept": float(self.intercept),
        }
        if self.is_text:
            assert self.projection is not None
            out |= {
                "embedder": self.embedder,
                "projection": {
                    "mean": _round(self.projection["mean"]),
                    "components": [_round(row) for row in self.projection["components"]],
                },
                "agent": None
                if self.agent is None
                else {
                    "features": list(self.agent["features"]),
                    **{k: _round(self.agent[k]) for k in ("mean", "scale", "coef")},
                },
                "temperature": float(self.temperature),
                "agent_temperature": float(self.agent_temperature),
                "unknown_below": float(self.unknown_below),
                "hidden": None
                if self.hidden is None
                else {
                    "W": [_round(row) for row in self.hidden["W"]],
                    "b": _round(self.hidden["b"]),
                    "v": _round(self.hidden["v"]),
                },
            }
        out["meta"] = self.meta
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LearnedModel:
        """Rebuild a model from :meth:`to_json` output; raises :class:`Invalid` on bad input."""
        fmt = data.get("format")
        if fmt not in {FORMAT, FORMAT_TEXT}:
            raise Invalid(f"tracer model format {fmt!r}; expected {FORMAT!r} or {FORMAT_TEXT!r}")
        names = list(data.get("features") or [])
        for key in ("mean", "scale", "coef"):
            if len(data.get(key) or []) != len(names):
                raise Invalid(f"tracer model: {key} has not one value per feature")
        scale = [float(v) if float(v) > 0 else 1.0 for v in data["scale"]]
        model = cls(
            features=names,
            mean=[float(v) for v in data["mean"]],
            scale=scale,
            coef=[float(v) for v in data["coef"]],
            intercept=float(data.get("intercept", 0.0)),
            meta=dict(data.get("meta") or {}),
        )
        if fmt == FORMAT_TEXT:
            projection = data.get("projection")
            if not isinstance(projection, Mapping) or not projection.get("components"):
                raise Invalid("tracer model: format 2 needs a projection")
            agent = data.get("agent")
            if agent is not None and (
                not isinstance(agent, Mapping)
                or len(agent.get("coef") or []) != len(agent.get("features") or [None])
            ):
                raise Invalid("tracer model: agent has not one coefficient per feature")
            model.embedder = str(data.get("embedder") or DEFAULT_EMBEDDER)
            model.projection = {
                "mean": list(projection["mean"]),
                "components": [list(r) for r in projection["components"]],
            }
            model.agent = None if agent is None else {k: list(agent[k]) for k in agent}
            model.temperature = float(data.get("temperature", 1.0))
            model.agent_temperature = float(data.get("agent_temperature", 1.0))
            model.unknown_below = float(data.get("unknown_below", 0.0))
            hidden = data.get("hidden")
            if hidden is not None:
                w = hidden.get("W") if isinstance(hidden, Mapping) else None
                if not w or len(w) != len(names) or len(w[0]) != len(hidden.get("v") or []):
                    raise Invalid("tracer model: hidden layer does not fit the features")
                model.hidden = {k: list(hidden[k]) for k in ("W", "b", "v")}
        return model

    def save(self, path: Path | str) -> Path:
        """Write the model as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path | str) -> LearnedModel:
        """Read a model written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise NotFound(f"{path}: no tracer model there (train one with `kb tracer train`)")
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise Invalid(f"{path}: not valid JSON ({exc.msg})") from exc


def _round(values: Sequence[Any]) -> list[float]:
    return [float(f"{float(v):.6g}") for v in values]


def _embedder_name(embed: Embed | None) -> str | None:
    owner = getattr(embed, "__self__", None)
    name = getattr(owner, "name", None) or getattr(embed, "name", None)
    return str(name) if name else None


@lru_cache(maxsize=1)
def _bundled_embedder() -> Any:
    from kb.embeddings import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(DEFAULT_EMBEDDER)


@dataclass
class Trace:
    """What a tracer says about a log: the attribution, every step's probability of being the
    decisive mistake, each agent's share of the blame, and how sure it is of the agent."""

    attribution: Attribution
    step_probs: list[float]
    agent_shares: dict[str, float]
    agent_confidence: float

    def to_json(self) -> dict[str, Any]:
        return {
            "attribution": self.attribution.model_dump(mode="json"),
            "step_probs": self.step_probs,
            "agent_shares": self.agent_shares,
            "agent_confidence": self.agent_confidence,
        }


def calibrated(experience: ExperienceCreate, scores: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of ``scores / temperature`` over the steps that may be blamed (never the system
    prompt; tool output only when nothing else is there)."""
    roles = [role_of(s) for s in experience.steps]
    allowed = np.array([r in {"actor", "user"} for r in roles])
    if not allowed.any():
        allowed = np.array([r != "system" for r in roles])
    if not allowed.any():
        allowed = np.ones(len(roles), dtype=bool)
    z = np.where(allowed, np.asarray(scores, dtype=np.float64) / max(temperature, 1e-6), -np.inf)
    z = z - z[allowed].max()
    e = np.where(allowed, np.exp(z), 0.0)
    return np.asarray(e / e.sum())


def confidence_of(probs: np.ndarray, best: int) -> float:
    """The confidence that step ``best`` is the decisive one: its probability against the steps
    and one more candidate, "a typical step of this log" (the median probability), which stands
    for "no single step explains it". A log with one candidate and no evidence gets 0.5, not 1;
    ``k`` equally likely steps get ``1 / (k + 1)``."""
    allowed = probs[probs > 0]
    if allowed.size == 0:
        return 0.0
    return float(probs[best] / (1.0 + float(np.median(allowed))))


def build_trace(
    experience: ExperienceCreate,
    probs: np.ndarray,
    shares: Mapping[str, float],
    *,
    method: str,
    contributions: np.ndarray | None = None,
    names: Sequence[str] = FEATURES,
    unknown_below: float = 0.0,
) -> Trace:
    """Turn step probabilities and agent shares into a :class:`Trace`.

    The agent is the one with the largest share; the step is the most probable step of that agent
    (so agent and step agree); the confidence is :func:`confidence_of` that step. Below
    ``unknown_below`` (on the agent's share) the answer is ``unknown``: no agent and no step, the
    best guess named in the reason.
    """
    from kb.trace.agents import agent_name
    from kb.trace.scoring import explain_step

    agent = max(shares, key=lambda a: shares[a]) if shares else None
    mine = [i for i, s in enumerate(experience.steps) if agent_name(s) == agent]
    best = max(mine, key=lambda i: probs[i]) if mine else int(np.argmax(probs))
    agent_conf = float(shares.get(agent, 0.0)) if agent else 0.0
    why = explain_step(contributions, best, names) if contributions is not None else ""
    share_text = ", ".join(
        f"{a} {v:.2f}" for a, v in sorted(shares.items(), key=lambda kv: -kv[1])[:4]
    )
    confidence = confidence_of(np.asarray(probs), best)
    if agent is None or agent_conf < unknown_below:
        attribution = Attribution(
            agent=None,
            step=None,
            reason=(
                f"unknown: best guess step {best} ({agent}) at agent confidence {agent_conf:.2f}, "
                f"below {unknown_below:.2f}; shares: {share_text} [{method}]"
            ),
            confidence=confidence,
            step_scores=[float(p) for p in probs],
            method=method,
        )
    else:
        attribution = Attribution(
            agent=agent,
            step=best,
            reason=f"step {best} ({agent}): {why or 'highest score'}; agent shares: {share_text} [{method}]",
            confidence=confidence,
            step_scores=[float(p) for p in probs],
            method=method,
        )
    return Trace(attribution, [float(p) for p in probs], dict(shares), agent_conf)


@lru_cache(maxsize=1)
def default_model() -> LearnedModel | None:
    """The model shipped with the package, or None when the file is absent."""
    if not DEFAULT_MODEL_PATH.is_file():
        return None
    return LearnedModel.load(DEFAULT_MODEL_PATH)


def attribute(
    experience: ExperienceCreate,
    *,
    model: LearnedModel | None = None,
    references: Sequence[ExperienceCreate] = (),
    embed: Embed | None = None,
) -> Attribution:
    """Blame the step the model scores highest (the default model when none is given).

    A format-2 model answers through :meth:`LearnedModel.trace` (calibrated, with agent shares).
    """
    model = model or default_model()
    if model is None:
        raise NotFound(
            "no tracer model: train one with `kb tracer train` or ship default_model.json"
        )
    if model.is_text:
        return model.trace(experience, references=references, embed=embed)
    features = extract(experience, references=references, embed=embed)
    scores = model.scores(features)
    return attribution_from_scores(
        experience,
        scores,
        method="learned",
        contributions=model.contributions(features) if model.features == list(FEATURES) else None,
        temperature=model.temperature,
    )
