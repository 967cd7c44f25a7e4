"""The learned tracer's files: plain JSON, loaded and scored the same; bad files refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kb.errors import Invalid
from kb.models import ExperienceCreate, Outcome, Step
from kb.trace import attribute
from kb.trace.features import FEATURES, extract
from kb.trace.learned import DEFAULT_MODEL_PATH, LearnedModel, default_model


def _failure(seed: int) -> tuple[ExperienceCreate, int]:
    rng = np.random.default_rng(seed)
    steps: list[dict[str, Any]] = [{"role": "user", "content": "Update the address of order #W1"}]
    bad = int(rng.integers(1, 5))
    for i in range(6):
        if i == bad:
            steps.append(
                {
                    "role": "assistant",
                    "kind": "tool_call",
                    "tool": "update_address",
                    "args": {"order_id": "#W1"},
                }
            )
            steps.append({"role": "tool", "kind": "error", "error": "Error: zip is required"})
        else:
            steps.append(
                {
                    "role": "assistant",
                    "kind": "tool_call",
                    "tool": "get_order",
                    "args": {"order_id": "#W1"},
                }
            )
            steps.append({"role": "tool", "kind": "observation", "result": '{"ok": true}'})
    exp = ExperienceCreate(
        task="Update the address of order #W1",
        outcome=Outcome.failure,
        steps=[Step(index=i, agent=s["role"], **s) for i, s in enumerate(steps)],
    )
    return exp, 1 + 2 * bad


def test_a_format_1_model_round_trips_and_scores_the_same(tmp_path: Path) -> None:
    # a store trained by an earlier version keeps a linear scorer over the hand-made features
    coef = [0.0] * len(FEATURES)
    coef[FEATURES.index("error_next")] = 3.0
    model = LearnedModel(
        features=list(FEATURES),
        mean=[0.0] * len(FEATURES),
        scale=[1.0] * len(FEATURES),
        coef=coef,
    )
    path = model.save(tmp_path / "tracer.json")
    raw = path.read_bytes()
    assert raw.lstrip().startswith(b"{")  # plain JSON, not a pickle
    data = json.loads(raw)
    assert data["format"] == "kb-tracer-logreg/1" and len(data["coef"]) == len(data["features"])
    loaded = LearnedModel.load(path)
    exp, target = _failure(99)
    matrix = extract(exp)
    assert np.allclose(model.scores(matrix), loaded.scores(matrix))
    result = attribute(exp, method="learned", model=loaded)
    assert result.step == target and result.method == "learned"


def test_shipped_default_model_is_plain_json() -> None:
    assert DEFAULT_MODEL_PATH.is_file()
    json.loads(DEFAULT_MODEL_PATH.read_text())
    model = default_model()
    assert model is not None and model.meta.get("script")


def test_bad_model_json_is_refused() -> None:
    with pytest.raises(Invalid):
        LearnedModel.from_json({"format": "pickle"})
    with pytest.raises(Invalid):
        LearnedModel.from_json(
            {
                "format": "kb-tracer-logreg/1",
                "features": ["a"],
                "mean": [],
                "scale": [1],
                "coef": [1],
            }
        )
