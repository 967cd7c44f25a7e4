"""Training the format-2 tracer: listwise step scorer, agent model, temperatures, threshold.

The step scorer is linear over the design rows of :mod:`kb.trace.design` and is fitted *listwise*:
the loss is the negative log of the softmax probability of the labelled step among the steps of
its log (never the system prompt or raw tool output, as at inference), with an L2 penalty towards
a prior (zero, or a base model's weights when fine-tuning on a store's few labels). The agent
model is fitted the same way over the candidate agents of each log, on step probabilities made by
cross-fitting (each half scored by a model that did not see it). Temperatures are fitted on a
held-out part of the examples (grouped by source task, so no task is on both sides).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kb.errors import Invalid
from kb.models import ExperienceCreate
from kb.trace.agents import agent_name, canonical
from kb.trace.blame import AGENT_FEATURES, table
from kb.trace.design import DENSE, TEXT_BLOCKS, EmbedCache, StepText, dense, encode, text_blocks
from kb.trace.features import Embed
from kb.trace.learned import DEFAULT_EMBEDDER, LearnedModel, calibrated

Log = Callable[[str], None]


@dataclass
class Example:
    """A labelled failure: the decisive step and the responsible agent."""

    experience: ExperienceCreate
    step: int
    agent: str
    weight: float = 1.0
    group: str = ""
    fault: str = ""


def examples_from(experiences: Iterable[ExperienceCreate], *, weight: float = 1.0) -> list[Example]:
    """The failures that carry a label (``attribution.method == "label"`` with a valid step)."""
    out = []
    for exp in experiences:
        label = exp.attribution
        if label is None or label.method != "label" or label.step is None:
            continue
        if not 0 <= label.step < len(exp.steps):
            continue
        agent = canonical(label.agent) if label.agent else agent_name(exp.steps[label.step])
        fault = exp.artifacts.get("fault") if isinstance(exp.artifacts, dict) else None
        group = (
            str(fault.get("source_id"))
            if isinstance(fault, dict) and fault.get("source_id")
            else str(exp.provenance.source_id or exp.task[:80])
        )
        if any(t.startswith("style:") for t in exp.tags) and exp.domain:
            group = f"domain:{exp.domain}"  # templated runs: one group per domain (see split)
        out.append(
            Example(
                exp,
                label.step,
                agent,
                weight,
                group,
                str(fault.get("type")) if isinstance(fault, dict) else "",
            )
        )
    return out


def allowed_mask(experience: ExperienceCreate) -> np.ndarray:
    """The steps a tracer may blame (as :func:`kb.trace.learned.calibrated` does)."""
    probe = calibrated(experience, np.zeros(len(experience.steps)), 1.0)
    return np.asarray(probe > 0)


@dataclass
class Featurized:
    """Design matrices of many examples, built once."""

    dense: list[np.ndarray]
    text: list[StepText]
    masks: list[np.ndarray]
    seconds: float = 0.0


def featurize_all(
    experiences: Sequence[ExperienceCreate], embed: Embed, *, log: Log | None = None
) -> Featurized:
    """Embed every distinct text once, then build each experience's dense features."""
    from kb.trace.design import texts_of

    started = time.perf_counter()
    cache = embed if isinstance(embed, EmbedCache) else EmbedCache(embed)
    texts = list(dict.fromkeys(t for e in experiences for t in texts_of(e)))
    missing = [t for t in texts if t not in cache.vectors]
    # long calls: the embedder sorts each call's texts by length, so batches pad less
    for start in range(0, len(missing), 4096):
        cache(missing[start : start + 4096])
        if log:
            log(f"embedded {min(start + 4096, len(missing))}/{len(missing)} texts")
    text = [encode(e, cache) for e in experiences]
    mats = [dense(e, text=t) for e, t in zip(experiences, text, strict=True)]
    masks = [allowed_mask(e) for e in experiences]
    return Featurized(mats, text, masks, time.perf_counter() - started)


def fit_projection(vectors: np.ndarray, dim: int, *, seed: int = 0) -> dict[str, list[Any]]:
    """PCA of sentence embeddings (on at most 20,000 of them)."""
    rng = np.random.default_rng(seed)
    if len(vectors) > 20_000:
        vectors = vectors[rng.choice(len(vectors), 20_000, replace=False)]
    mean = vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
    return {"mean": mean.tolist(), "components": vt[:dim].tolist()}


def _projector(projection: dict[str, list[Any]]) -> Callable[[np.ndarray], np.ndarray]:
    mean = np.asarray(projection["mean"], dtype=np.float32)
    comps = np.asarray(projection["components"], dtype=np.float32)

    def project(v: np.ndarray) -> np.ndarray:
        return np.asarray((v - mean) @ comps.T, dtype=np.float64)

    return project


@dataclass
class Stacked:
    """Rows of many lists (logs or agent tables) in one matrix, for a listwise fit."""

    x: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    targets: np.ndarray  # absolute row of each list's target
    weights: np.ndarray
    mask: np.ndarray

    @classmethod
    def build(
        cls,
        mats: Sequence[np.ndarray],
        targets: Sequence[int],
        weights: Sequence[float],
        masks: Sequence[np.ndarray],
    ) -> Stacked:
        lengths = np.array([m.shape[0] for m in mats])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
        return cls(
            x=np.vstack(mats).astype(np.float32),
            starts=starts,
            lengths=lengths,
            targets=starts + np.asarray(targets, dtype=int),
            weights=np.asarray(weights, dtype=np.float64),
            mask=np.concatenate(masks).astype(bool),
        )


def _segment_softmax(s: Stacked, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.where(s.mask, scores, -np.inf)
    m = np.maximum.reduceat(z, s.starts)
    e = np.where(s.mask, np.exp(z - np.repeat(m, s.lengths)), 0.0)
    total = np.add.reduceat(e, s.starts)
    p = e / np.repeat(total, s.lengths)
    return p, m + np.log(total)


def listwise(
    s: Stacked,
    *,
    l2: float | np.ndarray,
    prior: np.ndarray | None = None,
    start: np.ndarray | None = None,
    maxiter: int = 400,
) -> np.ndarray:
    """Weights minimising the weighted mean listwise loss + ``l2/2 * |w - prior|^2`` (``l2`` a
    number, or one per weight)."""
    from scipy.optimize import minimize

    k = s.x.shape[1]
    prior = np.zeros(k) if prior is None else np.asarray(prior, dtype=np.float64)
    total = s.weights.sum()

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        scores = s.x @ w.astype(np.float32)
        p, log_z = _segment_softmax(s, scores.astype(np.float64))
        ll = scores[s.targets] - log_z
        value = -(s.weights * ll).sum() / total + 0.5 * float((l2 * (w - prior) ** 2).sum())
        r = p * np.repeat(s.weights / total, s.lengths)
        r[s.targets] -= s.weights / total
        grad = (s.x.T @ r.astype(np.float32)).astype(np.float64) + l2 * (w - prior)
        return float(value), grad

    w0 = prior.copy() if start is None else np.asarray(start, dtype=np.float64)
    result = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": maxiter})
    return np.asarray(result.x)


def listwise_mlp(
    s: Stacked,
    *,
    hidden: int,
    l2: float | np.ndarray,
    l2_hidden: float,
    prior: np.ndarray | None = None,
    seed: int = 0,
    maxiter: int = 400,
) -> tuple[np.ndarray, dict[str, list[Any]]]:
    """A listwise scorer with one hidden layer beside the linear part:
    ``score = x . u + v . relu(x W + b)``. Returns ``(u, {"W", "b", "v"})``."""
    from scipy.optimize import minimize

    _n, k = s.x.shape
    rng = np.random.default_rng(seed)
    prior = np.zeros(k) if prior is None else np.asarray(prior, dtype=np.float64)
    total = s.weights.sum()
    sizes = [k, k * hidden, hidden, hidden]
    cuts = np.cumsum(sizes)[:-1]

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, ...]:
        u, w, b, v = np.split(theta, cuts)
        return u, w.reshape(k, hidden), b, v

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        u, w, b, v = unpack(theta)
        z = s.x @ w.astype(np.float32) + b.astype(np.float32)
        a = np.maximum(z, 0.0)
        scores = (s.x @ u.astype(np.float32) + a @ v.astype(np.float32)).astype(np.float64)
        p, log_z = _segment_softmax(s, scores)
        ll = scores[s.targets] - log_z
        value = -(s.weights * ll).sum() / total
        value += 0.5 * float((l2 * (u - prior) ** 2).sum())
        value += 0.5 * l2_hidden * float((w**2).sum() + (v**2).sum())
        r = p * np.repeat(s.weights / total, s.lengths)
        r[s.targets] -= s.weights / total
        r32 = r.astype(np.float32)
        du = (s.x.T @ r32).astype(np.float64) + l2 * (u - prior)
        dv = (a.T @ r32).astype(np.float64) + l2_hidden * v
        dz = (r32[:, None] * v.astype(np.float32)[None, :]) * (z > 0)
        dw = (s.x.T @ dz).astype(np.float64) + l2_hidden * w
        db = dz.sum(axis=0).astype(np.float64)
        return float(value), np.concatenate([du, dw.ravel(), db, dv])

    theta0 = np.concatenate(
        [prior, rng.normal(0, 0.05, k * hidden), np.zeros(hidden), rng.normal(0, 0.05, hidden)]
    )
    result = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": maxiter})
    u, w, b, v = unpack(np.asarray(result.x))
    return u, {"W": w.tolist(), "b": b.tolist(), "v": v.tolist()}


def fit_temperature(
    score_lists: Sequence[np.ndarray], targets: Sequence[int], masks: Sequence[np.ndarray]
) -> float:
    """The temperature that minimises the held-out negative log-likelihood of the targets, under
    the confidence the tracer reports (:func:`kb.trace.learned.confidence_of`)."""
    from scipy.optimize import minimize_scalar

    if not score_lists:
        return 1.0

    def nll(log_t: float) -> float:
        t = float(np.exp(log_t))
        out = 0.0
        for scores, target, mask in zip(score_lists, targets, masks, strict=True):
            z = np.where(mask, scores / t, -np.inf)
            z = z - z[mask].max()
            e = np.exp(z[mask])
            p = np.exp(z[target]) / e.sum()
            # the same confidence the tracer reports (see kb.trace.learned.confidence_of)
            out -= np.log(max(p / (1.0 + float(np.median(e / e.sum()))), 1e-12))
        return out / len(score_lists)

    result = minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded")
    return float(np.exp(result.x))


@dataclass
class FitConfig:
    pca_dim: int = 64
    l2: float = 0.3  # on the text features
    l2_dense: float = 0.03  # on the hand-made and structural ones
    agent_l2: float = 0.05
    val_fraction: float = 0.15
    seed: int = 0
    unknown_below: float = 0.35  # on the reported agent's share (with k agents it is >= 1/k)
    text: bool = True
    hidden: int = 32  # units of a hidden layer beside the linear scorer (0: linear only)
    l2_hidden: float = 0.03


@dataclass
class FitReport:
    examples: int = 0
    validation: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    val_step_accuracy: float = 0.0
    val_agent_accuracy: float = 0.0


def split_groups(
    examples: Sequence[Example], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Train and validation indices; all failures of one group land on the same side.

    Groups are source tasks, and whole domains for templated team runs, so that validation
    (where temperatures are fitted) sees tasks, and domains, that training did not: closer to the
    shift a tracer meets on new logs. Each kind of group is split in the same proportion.
    """
    rng = random.Random(seed)
    kinds: dict[str, list[str]] = {}
    for group in sorted({e.group for e in examples}):
        kinds.setdefault(group.split(":", 1)[0] if group.startswith("domain:") else "", []).append(
            group
        )
    held: set[str] = set()
    for groups in kinds.values():
        rng.shuffle(groups)
        take = round(len(groups) * fraction)
        if fraction > 0 and len(groups) >= 2:
            take = max(1, take)
        held.update(groups[:take])
    train = [i for i, e in enumerate(examples) if e.group not in held]
    val = [i for i, e in enumerate(examples) if e.group in held]
    return train, val


class Trainer:
    """Fits format-2 tracers on labelled examples; reuses embeddings across fits."""

    def __init__(self, embed: Embed, *, embedder: str = DEFAULT_EMBEDDER, log: Log | None = None):
        self.cache = embed if isinstance(embed, EmbedCache) else EmbedCache(embed)
        self.embedder = embedder
        self.log = log
        self._feats: dict[int, tuple[np.ndarray, StepText, np.ndarray]] = {}
        self.feature_seconds = 0.0

    def features(
        self, examples: Sequence[Example]
    ) -> list[tuple[np.ndarray, StepText, np.ndarray]]:
        todo = [e.experience for e in examples if id(e.experience) not in self._feats]
        if todo:
            built = featurize_all(todo, self.cache, log=self.log)
            self.feature_seconds += built.seconds
            for exp, d, t, m in zip(todo, built.dense, built.text, built.masks, strict=True):
                self._feats[id(exp)] = (d, t, m)
        return [self._feats[id(e.experience)] for e in examples]

    def matrices(
        self, examples: Sequence[Example], project: Callable[[np.ndarray], np.ndarray] | None
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        feats = self.features(examples)
        mats = []
        for d, t, _ in feats:
            mats.append(np.hstack([d, text_blocks(t, project)]) if project is not None else d)
        return mats, [m for _, _, m in feats]

    def fit(
        self,
        examples: Sequence[Example],
        *,
        config: FitConfig | None = None,
        base: LearnedModel | None = None,
        validation: Sequence[Example] | None = None,
        report: FitReport | None = None,
    ) -> LearnedModel:
        """Train a format-2 model (fine-tuned towards ``base`` when given).

        ``validation`` defaults to a held-out part of ``examples`` (grouped by source).
        """
        cfg = config or FitConfig()
        report = report if report is not None else FitReport()
        if not examples:
            raise Invalid("no labelled failures to train the tracer on")
        started = time.perf_counter()
        if validation is None and len(examples) >= 40 and cfg.val_fraction > 0:
            tr, va = split_groups(examples, cfg.val_fraction, cfg.seed)
            train_ex = [examples[i] for i in tr]
            val_ex = [examples[i] for i in va]
        else:
            train_ex, val_ex = list(examples), list(validation or [])
        self.features([*train_ex, *val_ex])
        report.seconds["features"] = time.perf_counter() - started
        t0 = time.perf_counter()
        if base is not None and base.projection is not None:
            projection = base.projection
        elif cfg.text:
            vectors = np.vstack([self._feats[id(e.experience)][1].steps for e in train_ex])
            projection = fit_projection(vectors, cfg.pca_dim, seed=cfg.seed)
        else:
            projection = None
        project = _projector(projection) if projection is not None else None
        names = list(DENSE)
        if projection is not None:
            p = len(projection["components"])
            names += [f"{block}:{k}" for block in TEXT_BLOCKS for k in range(p)]
        mats, masks = self.matrices(train_ex, project)
        if base is not None and base.features == names:
            mean, scale = np.asarray(base.mean), np.asarray(base.scale)
            prior: np.ndarray | None = np.asarray(base.coef)
        else:
            allx = np.vstack(mats)
            mean, scale = allx.mean(axis=0), allx.std(axis=0)
            scale[scale < 1e-9] = 1.0
            prior = None
        norm = [(m - mean) / scale for m in mats]
        stacked = Stacked.build(
            norm, [e.step for e in train_ex], [e.weight for e in train_ex], masks
        )
        penalty = np.full(len(names), cfg.l2)
        penalty[: len(DENSE)] = cfg.l2_dense
        hidden_layer = None
        if base is not None and base.hidden is not None and prior is not None:
            coef = listwise(stacked, l2=penalty, prior=prior)
            hidden_layer = base.hidden  # fine-tuning moves the linear part only
        elif cfg.hidden > 0:
            coef, hidden_layer = listwise_mlp(
                stacked, hidden=cfg.hidden, l2=penalty, l2_hidden=cfg.l2_hidden, seed=cfg.seed
            )
        else:
            coef = listwise(stacked, l2=penalty, prior=prior)
        report.seconds["steps"] = time.perf_counter() - t0
        model = LearnedModel(
            features=names,
            mean=mean.tolist(),
            scale=scale.tolist(),
            coef=coef.tolist(),
            embedder=self.embedder,
            projection=projection,
            unknown_below=cfg.unknown_below,
            hidden=hidden_layer,
        )
        t0 = time.perf_counter()
        # agent model on cross-fitted step probabilities
        if base is not None and base.agent is not None:
            agent_prior: np.ndarray | None = np.asarray(base.agent["coef"])
            probs = [
                calibrated(e.experience, model.scores(m), 1.0)
                for e, m in zip(train_ex, mats, strict=True)
            ]
        else:
            agent_prior = None
            probs = self._crossfit(train_ex, norm, masks, cfg)
        agent_rows, agent_targets, agent_weights = [], [], []
        for e, pr in zip(train_ex, probs, strict=True):
            tab = table(e.experience, pr)
            target = _agent_index(tab.agents, e.agent)
            if target is None:
                continue
            agent_rows.append(tab.features)
            agent_targets.append(target)
            agent_weights.append(e.weight)
        if agent_rows:
            if base is not None and base.agent is not None:
                amean, ascale = np.asarray(base.agent["mean"]), np.asarray(base.agent["scale"])
            else:
                allx = np.vstack(agent_rows)
                amean, ascale = allx.mean(axis=0), allx.std(axis=0)
                ascale[ascale < 1e-9] = 1.0
            astacked = Stacked.build(
                [(r - amean) / ascale for r in agent_rows],
                agent_targets,
                agent_weights,
                [np.ones(len(r), dtype=bool) for r in agent_rows],
            )
            acoef = listwise(astacked, l2=cfg.agent_l2, prior=agent_prior)
            model.agent = {
                "features": list(AGENT_FEATURES),
                "mean": amean.tolist(),
                "scale": ascale.tolist(),
                "coef": acoef.tolist(),
            }
        report.seconds["agents"] = time.perf_counter() - t0
        if base is not None:
            model.temperature = base.temperature
            model.agent_temperature = base.agent_temperature
        if val_ex:
            self.calibrate(model, val_ex, report=report)
        report.examples = len(train_ex)
        report.validation = len(val_ex)
        report.seconds["total"] = time.perf_counter() - started
        model.meta.update(
            {
                "examples": len(train_ex),
                "validation": len(val_ex),
                "l2": cfg.l2,
                "pca_dim": len(projection["components"]) if projection else 0,
            }
        )
        return model

    def _crossfit(
        self,
        examples: Sequence[Example],
        norm: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        cfg: FitConfig,
    ) -> list[np.ndarray]:
        idx_a, idx_b = split_groups(examples, 0.5, cfg.seed + 1)
        out: list[np.ndarray] = [np.zeros(0)] * len(examples)
        for fit_on, score_on in ((idx_a, idx_b), (idx_b, idx_a)):
            if not fit_on or not score_on:
                continue
            st = Stacked.build(
                [norm[i] for i in fit_on],
                [examples[i].step for i in fit_on],
                [examples[i].weight for i in fit_on],
                [masks[i] for i in fit_on],
            )
            penalty = np.full(st.x.shape[1], cfg.l2)
            penalty[: len(DENSE)] = cfg.l2_dense
            # the same kind of scorer as the final one, so that the agent model learns from step
            # probabilities as sharp as those it will be given
            if cfg.hidden > 0:
                u, layer = listwise_mlp(
                    st, hidden=cfg.hidden, l2=penalty, l2_hidden=cfg.l2_hidden, seed=cfg.seed
                )
                w_h = np.asarray(layer["W"])
                b_h, v_h = np.asarray(layer["b"]), np.asarray(layer["v"])
            else:
                u = listwise(st, l2=penalty)
            for i in score_on:
                scores = norm[i] @ u
                if cfg.hidden > 0:
                    scores = scores + np.maximum(norm[i] @ w_h + b_h, 0.0) @ v_h
                out[i] = calibrated(examples[i].experience, scores, 1.0)
        for i, probs in enumerate(out):
            if probs.size == 0:
                out[i] = calibrated(examples[i].experience, np.zeros(len(norm[i])), 1.0)
        return out

    def raw_scores(self, model: LearnedModel, examples: Sequence[Example]) -> list[np.ndarray]:
        project = model.project if model.projection is not None else None
        mats, _ = self.matrices(examples, project)
        return [model.scores(m) for m in mats]

    def calibrate(
        self, model: LearnedModel, val: Sequence[Example], *, report: FitReport | None = None
    ) -> None:
        """Fit the step and agent temperatures on held-out examples."""
        scores = self.raw_scores(model, val)
        masks = [self._feats[id(e.experience)][2] for e in val]
        model.temperature = fit_temperature(scores, [e.step for e in val], masks)
        if model.agent is None:
            return
        agent_scores, agent_targets, agent_masks = [], [], []
        hits_step = hits_agent = 0
        for e, sc in zip(val, scores, strict=True):
            probs = calibrated(e.experience, sc, model.temperature)
            tab = table(e.experience, probs)
            target = _agent_index(tab.agents, e.agent)
            hits_step += int(np.argmax(probs)) == e.step
            if target is None:
                continue
            z = (tab.features - np.asarray(model.agent["mean"])) / np.asarray(model.agent["scale"])
            s = z @ np.asarray(model.agent["coef"])
            hits_agent += int(np.argmax(s)) == target
            agent_scores.append(s)
            agent_targets.append(target)
            agent_masks.append(np.ones(len(s), dtype=bool))
        model.agent_temperature = fit_temperature(agent_scores, agent_targets, agent_masks)
        if report is not None and val:
            report.val_step_accuracy = hits_step / len(val)
            report.val_agent_accuracy = hits_agent / len(val)


def _agent_index(agents: Sequence[str], agent: str) -> int | None:
    low = [a.lower() for a in agents]
    key = canonical(agent).lower()
    return low.index(key) if key in low else None


def surface_columns() -> list[int]:
    """The columns of the surface-only baseline: position, length and error tokens."""
    keep = {
        "rel_pos", "early", "length", "error_here", "error_next", "after_error", "pos_log",
        "from_end", "n_log",
    }  # fmt: skip
    return [i for i, name in enumerate(DENSE) if name in keep]


FINE_TUNE = FitConfig(l2=100.0, l2_dense=0.03, agent_l2=10.0, val_fraction=0.0)
"""Fine-tuning on a store's few labels: the text weights stay near the base model's (a strong
penalty towards them), the hand-made and structural weights are fitted as freely as in a
from-scratch fit (the same ``l2_dense``), the agent model moves a little."""


def train(
    labelled: Sequence[ExperienceCreate],
    *,
    successes: Sequence[ExperienceCreate] = (),
    base: LearnedModel | None = None,
    embed: Embed | None = None,
    seed: int = 0,
    per_success: int = 3,
    label_weight: float = 1.0,
    config: FitConfig | None = None,
    log: Log | None = None,
) -> LearnedModel:
    """Train a tracer on labelled failures, plus faults injected into ``successes``.

    Args:
        labelled: failures with a human label (``attribution.method == "label"``); others are
            ignored.
        successes: successful runs to make synthetic labelled failures from
            (:func:`kb.trace.synth.synthesize`).
        base: a format-2 model to fine-tune (e.g. :func:`kb.trace.learned.default_model`);
            without one a model is trained from scratch (needs 40 examples or more).
        embed: the sentence embedder (default: the bundled model).
        seed: for the synthetic faults and the validation split.
        per_success: synthetic failures per success.
        label_weight: weight of a human label relative to a synthetic one.
        config: fitting options (default: :data:`FINE_TUNE` with a base, else :class:`FitConfig`).

    Returns:
        The trained model (save it with :meth:`LearnedModel.save`).
    """
    from kb.trace.synth import synthesize

    examples = examples_from(labelled, weight=label_weight)
    if successes:
        examples += examples_from(synthesize(successes, seed=seed, per_success=per_success))
    if not examples:
        raise Invalid("no labelled failures to train on: label some, or give successes")
    if base is not None and not base.is_text:
        base = None
    if base is None and len(examples) < 40:
        raise Invalid(
            f"{len(examples)} labelled failures are too few to train a tracer from scratch "
            "(40 or more); fine-tune the shipped model instead"
        )
    embedder = base.embedder if base is not None else DEFAULT_EMBEDDER
    if embed is None:
        from kb.trace.learned import _bundled_embedder

        embed = _bundled_embedder().encode
    trainer = Trainer(embed, embedder=embedder or DEFAULT_EMBEDDER, log=log)
    cfg = config or (FINE_TUNE if base is not None else FitConfig(seed=seed))
    model = trainer.fit(examples, config=cfg, base=base)
    model.meta.update(
        {
            "labels": sum(1 for e in labelled if e.attribution and e.attribution.method == "label"),
            "synthetic_from": len(successes),
            "base": None if base is None else base.meta.get("trained_at"),
        }
    )
    return model
