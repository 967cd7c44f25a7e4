"""The trained (format 2) tracer: fit, save as plain JSON, load, trace with calibrated confidence
and agent shares, fine-tune on a few labels. Logic only: a meaning-free hash embedder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kb.embeddings import HashEmbedder
from kb.errors import Invalid
from kb.models import Attribution, ExperienceCreate
from kb.trace import attribute, explain, generate_team_logs, synthesize, train
from kb.trace.agents import agent_name
from kb.trace.fit import FitConfig, Stacked, Trainer, examples_from, fit_temperature, listwise
from kb.trace.learned import FORMAT_TEXT, LearnedModel, confidence_of

pytestmark = pytest.mark.timeout(600)
HASH = HashEmbedder(dim=32)


@pytest.fixture(scope="module")
def failures() -> list[ExperienceCreate]:
    return synthesize(generate_team_logs(45, seed=11), seed=2, per_success=2)


@pytest.fixture(scope="module")
def model(failures: list[ExperienceCreate]) -> LearnedModel:
    trainer = Trainer(HASH.encode, embedder=HASH.name)
    return trainer.fit(examples_from(failures), config=FitConfig(pca_dim=8, hidden=8))


def test_listwise_fit_finds_the_marked_step() -> None:
    rng = np.random.default_rng(0)
    mats, targets = [], []
    for _ in range(60):
        x = rng.normal(size=(8, 3))
        t = int(rng.integers(8))
        x[t, 0] += 3.0  # feature 0 marks the target
        mats.append(x)
        targets.append(t)
    st = Stacked.build(mats, targets, [1.0] * 60, [np.ones(8, dtype=bool)] * 60)
    w = listwise(st, l2=0.01)
    assert w[0] > 1.0 and abs(w[1]) < 0.5
    hits = sum(int(np.argmax(m @ w)) == t for m, t in zip(mats, targets, strict=True))
    assert hits >= 55
    assert 0.1 < fit_temperature([m @ w for m in mats], targets, [np.ones(8, bool)] * 60) < 10


def test_model_round_trips_as_plain_json(
    tmp_path: Path, model: LearnedModel, failures: list[ExperienceCreate]
) -> None:
    path = model.save(tmp_path / "tracer.json")
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT_TEXT and data["embedder"] == HASH.name
    assert len(data["coef"]) == len(data["features"]) == len(data["mean"])
    assert data["agent"]["features"] and data["temperature"] > 0
    loaded = LearnedModel.load(path)
    exp = failures[0]
    a = loaded.featurize(exp, embed=HASH.encode)
    b = model.featurize(exp, embed=HASH.encode)
    assert np.allclose(loaded.scores(a), model.scores(b), atol=1e-3)


def test_trace_is_calibrated_consistent_and_never_the_system_prompt(
    model: LearnedModel, failures: list[ExperienceCreate]
) -> None:
    for exp in failures[:20]:
        trace = model.explain(exp, embed=HASH.encode)
        a = trace.attribution
        assert isinstance(a, Attribution) and a.method == "learned"
        assert (
            abs(sum(trace.step_probs) - 1) < 1e-6
            and abs(sum(trace.agent_shares.values()) - 1) < 1e-6
        )
        if a.step is None:
            assert "unknown" in a.reason
            continue
        assert a.agent == agent_name(exp.steps[a.step])  # the step belongs to the blamed agent
        assert exp.steps[a.step].role not in {"system", "tool"}
        assert a.confidence == pytest.approx(confidence_of(np.asarray(trace.step_probs), a.step))
        assert a.confidence <= trace.step_probs[a.step]
        assert set(trace.agent_shares) == {
            agent_name(s) for s in exp.steps if s.role not in {"system", "tool"}
        }


def test_unknown_below_the_threshold(model: LearnedModel, failures: list[ExperienceCreate]) -> None:
    strict = LearnedModel.from_json({**model.to_json(), "unknown_below": 1.01})
    a = strict.trace(failures[0], embed=HASH.encode)
    assert a.step is None and a.agent is None and a.reason.startswith("unknown")
    assert a.step_scores and 0 <= a.confidence <= 1


def test_a_named_embedder_must_match(model: LearnedModel, failures: list[ExperienceCreate]) -> None:
    other = HashEmbedder(dim=32, name="another-model")
    with pytest.raises(Invalid, match="needs the embedder"):
        model.trace(failures[0], embed=other.encode)
    assert model.trace(failures[0], embed=lambda t: HASH.encode(t)).method == "learned"


def test_attribute_and_explain_use_a_given_model(
    model: LearnedModel, failures: list[ExperienceCreate]
) -> None:
    exp = failures[1]
    a = attribute(exp, method="learned", model=model, embed=HASH.encode)
    t = explain(exp, model=model, embed=HASH.encode)
    assert a == t.attribution


def test_fine_tune_on_a_few_labels_moves_the_weights(
    model: LearnedModel, failures: list[ExperienceCreate]
) -> None:
    labelled = failures[:6]
    tuned = train(labelled, base=model, embed=HASH.encode)
    assert tuned.features == model.features and tuned.projection == model.projection
    assert not np.allclose(tuned.coef, model.coef)
    assert tuned.meta["labels"] == 6
    with pytest.raises(Invalid, match="too few"):
        train(labelled, embed=HASH.encode)
    with pytest.raises(Invalid, match="no labelled failures"):
        train([], embed=HASH.encode)


@pytest.mark.slow  # trains the tracer on faults injected into a data set
def test_train_from_successes_makes_its_own_failures() -> None:
    successes = generate_team_logs(24, seed=4)
    model = train([], successes=successes, embed=HASH.encode, config=FitConfig(pca_dim=4))
    assert model.is_text and model.meta["synthetic_from"] == 24
    assert model.meta["examples"] + model.meta["validation"] >= 40


def test_the_heuristic_score_is_one_of_the_features(failures: list[ExperienceCreate]) -> None:
    from kb.trace import heuristic
    from kb.trace.design import DENSE, dense
    from kb.trace.features import extract, role_of

    exp = failures[0]
    expected, _ = heuristic.score(extract(exp), [role_of(s) for s in exp.steps])
    assert np.allclose(dense(exp)[:, DENSE.index("heuristic")], expected)
