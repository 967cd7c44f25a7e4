"""Agent blame by contribution: each agent's share of the responsibility for a failure.

Start from the step responsibilities ``p`` (a distribution over steps). With the additive value
``v(S) = sum(p[i] for i in S)`` the Shapley value of an agent over its steps is its own mass. Mass
also flows *back along the data flow*: a step that acts on an instruction or on values another
agent introduced passes part of its responsibility to that agent (the orchestrator that
mis-delegated, the planner whose wrong step was followed). Per agent the features below describe
both; a small listwise model trained on labelled failures (see :mod:`kb.trace.fit`) weighs them,
and without one the shares are the own mass plus half the flow received.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kb.models import ExperienceCreate
from kb.trace.agents import addressee, agent_name
from kb.trace.design import PLAN_RE, _is_variant, _tokens
from kb.trace.features import role_of, step_text

AGENT_FEATURES: tuple[str, ...] = (
    "mass",  # sum of the agent's step responsibilities (its Shapley value under additive v)
    "max_p",  # its most responsible step
    "top",  # it wrote the most responsible step
    "flow_instruction",  # responsibility of steps that followed this agent's instruction
    "flow_values",  # responsibility of steps built on values this agent introduced
    "variant_origin",  # it introduced a variant of a task value (another year, a look-alike name)
    "variant_used",  # ... that other agents then used
    "lead_of_top",  # it gave the last instruction before the most responsible step
    "plan_author",  # it wrote a plan (a numbered list)
    "addresses",  # share of its messages addressed to another agent (an orchestrator)
    "share",  # its share of the steps
    "first",  # it acts first
    "user_side",  # the human / user side of the conversation
    "log_steps",  # log of its number of steps
)


@dataclass
class AgentTable:
    """Candidate agents of a log and their features (one row each)."""

    agents: list[str]
    features: np.ndarray
    steps_of: dict[str, list[int]]


def candidates(experience: ExperienceCreate) -> dict[str, list[int]]:
    """Agents that may be blamed (never the system prompt or raw tool output), with their steps."""
    out: dict[str, list[int]] = {}
    for i, step in enumerate(experience.steps):
        if role_of(step) in {"actor", "user"}:
            out.setdefault(agent_name(step), []).append(i)
    return out


def instructors(experience: ExperienceCreate) -> list[str | None]:
    """Per step, the other agent whose instruction it acts on: the latest one that addressed or
    named this agent, else the previous speaker when that was another agent."""
    steps = experience.steps
    agents = [agent_name(s) for s in steps]
    roles = [role_of(s) for s in steps]
    names = {a for a, r in zip(agents, roles, strict=True) if r in {"actor", "user"}}
    last_to: dict[str, str] = {}
    out: list[str | None] = []
    previous: str | None = None
    for i, step in enumerate(steps):
        a = agents[i]
        who = last_to.get(a)
        if who is None and previous is not None and previous != a:
            who = previous
        out.append(who if roles[i] in {"actor", "user"} else None)
        if roles[i] in {"actor", "user"}:
            target = addressee(step)
            head = step_text(step)[:300]
            targets = (
                {target} if target else {b for b in names if b != a and len(b) > 2 and b in head}
            )
            for t in targets:
                last_to[t] = a
            previous = a
    return out


def table(experience: ExperienceCreate, probs: np.ndarray) -> AgentTable:
    """The per-agent features given step responsibilities ``probs``."""
    steps_of = candidates(experience)
    agents = sorted(steps_of, key=lambda a: steps_of[a][0])
    n = len(experience.steps)
    names = [agent_name(s) for s in experience.steps]
    roles = [role_of(s) for s in experience.steps]
    col = {name: j for j, name in enumerate(AGENT_FEATURES)}
    out = np.zeros((len(agents), len(AGENT_FEATURES)))
    if not agents:
        return AgentTable(agents, out, steps_of)
    probs = np.asarray(probs, dtype=np.float64)
    top = int(np.argmax(probs)) if probs.size else -1
    given = instructors(experience)
    texts = [step_text(s) for s in experience.steps]
    tokens = [_tokens(t) for t in texts]
    first_seen: dict[str, int] = {}
    for i, toks in enumerate(tokens):
        for tok in toks:
            first_seen.setdefault(tok, i)
    task_tokens = _tokens(experience.task)
    flow_values = dict.fromkeys(agents, 0.0)
    for i in range(n):
        fresh = [t for t in tokens[i] if t not in task_tokens and first_seen[t] < i]
        if not fresh or probs[i] == 0:
            continue
        for tok in fresh:
            owner = names[first_seen[tok]]
            if owner != names[i] and owner in flow_values:
                flow_values[owner] += probs[i] / len(fresh)
    variants: dict[str, float] = dict.fromkeys(agents, 0.0)
    used: dict[str, float] = dict.fromkeys(agents, 0.0)
    task_seen = {t.lower() for t in task_tokens}
    for tok, j in first_seen.items():
        owner = names[j]
        if owner not in variants or tok in task_seen or not _is_variant(tok, task_seen):
            continue
        variants[owner] += 1.0
        used[owner] += sum(
            probs[i] for i in range(j + 1, n) if names[i] != owner and tok in tokens[i]
        )
    first_agent = next((names[i] for i in range(n) if roles[i] == "actor"), None)
    for r, a in enumerate(agents):
        idx = steps_of[a]
        row = out[r]
        row[col["mass"]] = probs[idx].sum()
        row[col["max_p"]] = probs[idx].max()
        row[col["top"]] = top in idx
        row[col["flow_instruction"]] = sum(probs[i] for i in range(n) if given[i] == a)
        row[col["flow_values"]] = flow_values[a]
        row[col["variant_origin"]] = min(variants[a], 2.0) / 2
        row[col["variant_used"]] = used[a]
        row[col["lead_of_top"]] = top >= 0 and given[top] == a
        row[col["plan_author"]] = any(len(PLAN_RE.findall(texts[i])) >= 2 for i in idx)
        row[col["addresses"]] = sum(addressee(experience.steps[i]) is not None for i in idx) / len(
            idx
        )
        row[col["share"]] = len(idx) / n
        row[col["first"]] = a == first_agent
        row[col["user_side"]] = all(roles[i] == "user" for i in idx)
        row[col["log_steps"]] = np.log1p(len(idx)) / 4
    return AgentTable(agents, out, steps_of)


def default_scores(features: np.ndarray) -> np.ndarray:
    """Untrained shares: own mass plus half of the responsibility flowing back."""
    col = {name: j for j, name in enumerate(AGENT_FEATURES)}
    return (
        features[:, col["mass"]]
        + 0.5 * features[:, col["flow_instruction"]] * (1 - features[:, col["mass"]])
        + 1e-9
    )


def shares(
    experience: ExperienceCreate,
    probs: np.ndarray,
    *,
    coef: Sequence[float] | None = None,
    mean: Sequence[float] | None = None,
    scale: Sequence[float] | None = None,
    temperature: float = 1.0,
) -> dict[str, float]:
    """Each candidate agent's share of the responsibility (the shares sum to 1).

    With ``coef`` (a trained agent model) the shares are the softmax of its scores; without, they
    are :func:`default_scores` normalised.
    """
    tab = table(experience, probs)
    if not tab.agents:
        return {}
    if coef is None:
        raw = default_scores(tab.features)
        values = raw / raw.sum()
    else:
        z = (tab.features - np.asarray(mean or 0.0)) / np.asarray(scale or 1.0)
        s = z @ np.asarray(coef, dtype=np.float64) / max(temperature, 1e-6)
        s = np.exp(s - s.max())
        values = s / s.sum()
    return {a: float(v) for a, v in zip(tab.agents, values, strict=True)}
