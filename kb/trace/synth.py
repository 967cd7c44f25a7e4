"""Fault injection (the AgenTracer recipe): labelled failures made from successful runs.

A fault is injected at a chosen step and agent of a success; its consequences are propagated; the
result is a failed :class:`ExperienceCreate` in the native format whose ``attribution`` is the
label (``method="label"``: agent, step, reason) and whose ``artifacts["fault"]`` records the fault
type and how the flip of the outcome was confirmed.

Two kinds of success are accepted:

* runs of :mod:`kb.trace.teams` (multi-agent, ``artifacts["program"]``): the fault changes the
  program and the run is **replayed** on the simulated world, so every later message follows from
  the changed values; a fault counts as confirmed when the replayed final answer differs from the
  ground truth (faults that do not flip the outcome are dropped);
* tool-calling chat logs (tau-bench style: user, assistant, tool): the fault edits the log and
  substitutes the changed value in later steps. Where the task carries gold actions, a fault that
  removes or changes a state-changing call that matched them is confirmed (``gold_actions``: the
  final state can no longer equal the gold one); where the ground truth holds the changed value it
  is confirmed by ``answer``; otherwise it stays unconfirmed (``confirmed: false``).

Fault types: :data:`FAULTS`. ``mis_delegation`` in a single-agent chat is a hand-off to a human
agent that the task did not need; ``user_misstatement`` (the user gives a wrong detail that the
agent then uses) exists for chats only.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kb.models import Attribution, ExperienceCreate, Outcome, Step
from kb.trace import teams
from kb.trace.agents import agent_name
from kb.trace.features import calls_of, canon, flat_values, is_write, role_of

FAULTS: tuple[str, ...] = (
    "wrong_argument",
    "wrong_tool",
    "skipped_verification",
    "hallucinated_value",
    "premature_final_answer",
    "ignored_tool_error",
    "mis_delegation",
    "wrong_plan",
    "user_misstatement",
)
DESCRIBE = {
    "wrong_argument": "called a tool with a wrong argument",
    "wrong_tool": "called the wrong tool",
    "skipped_verification": "accepted a figure without the check that was needed",
    "hallucinated_value": "stated a value the tool output does not support",
    "premature_final_answer": "gave the final answer before the work was done",
    "ignored_tool_error": "carried on as if a failed tool call had succeeded",
    "mis_delegation": "handed the sub-task to the wrong agent",
    "wrong_plan": "planned a wrong step that the later steps followed",
    "user_misstatement": "gave a wrong detail that the agent then acted on",
}
TEAM_FAULTS = tuple(f for f in FAULTS if f != "user_misstatement")


@dataclass
class SynthReport:
    """What :func:`synthesize` made and how many faults were confirmed to flip the outcome."""

    made: int = 0
    by_fault: dict[str, int] = field(default_factory=dict)
    confirmed: dict[str, int] = field(default_factory=dict)  # by how: replay, gold_actions, answer
    unconfirmed: int = 0
    no_flip: int = 0  # replayed faults that left the answer right (dropped)

    def add(self, exp: ExperienceCreate) -> None:
        fault = exp.artifacts["fault"]
        self.made += 1
        self.by_fault[fault["type"]] = self.by_fault.get(fault["type"], 0) + 1
        how = fault.get("confirmed_by")
        if how:
            self.confirmed[how] = self.confirmed.get(how, 0) + 1
        else:
            self.unconfirmed += 1


def synthesize(
    successes: Sequence[ExperienceCreate],
    *,
    seed: int = 0,
    n: int | None = None,
    per_success: int = 2,
    faults: Sequence[str] = FAULTS,
    report: SynthReport | None = None,
) -> list[ExperienceCreate]:
    """Labelled failures made by injecting faults into ``successes``.

    Args:
        successes: successful runs (team runs from :func:`kb.trace.teams.generate_team_logs`, or
            tool-calling chat logs such as tau-bench successes); other outcomes are skipped.
        seed: makes the output deterministic.
        n: stop after this many failures (default: ``per_success`` per success).
        per_success: faults tried per success (different types where possible).
        faults: the fault types to draw from.
        report: filled with counts (made, by fault type, confirmed by replay / gold actions).

    Returns:
        Failed experiences with a ``label`` attribution and ``artifacts["fault"]``.
    """
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown fault types {sorted(unknown)}; choose from {FAULTS}")
    report = report if report is not None else SynthReport()
    rng = random.Random(f"synth|{seed}")
    pool = [s for s in successes if s.outcome == Outcome.success and s.steps]
    order = list(range(len(pool)))
    rng.shuffle(order)
    write_tools = _write_tools(pool)
    out: list[ExperienceCreate] = []
    limit = n if n is not None else per_success * len(pool)
    counts: dict[str, int] = dict.fromkeys(faults, 0)
    for k in order:
        success = pool[k]
        tried: set[str] = set()
        made = 0
        for _ in range(per_success * 3):
            if made >= per_success or len(out) >= limit:
                break
            # balance the fault types: least used first, ties broken at random
            options = [f for f in faults if f not in tried]
            if not options:
                break
            least = min(counts[f] for f in options)
            kind = rng.choice([f for f in options if counts[f] <= least + 1])
            if (
                not tried
                and success.ground_truth
                and "program" not in success.artifacts
                and "hallucinated_value" in options
            ):
                kind = "hallucinated_value"  # a misread figure that reaches the answer
            tried.add(kind)
            sub_seed = rng.randrange(2**31)
            if "program" in success.artifacts:
                failure = _inject_team(success, kind, sub_seed, report)
            else:
                failure = _inject_chat(success, kind, sub_seed, write_tools)
            if failure is None:
                continue
            counts[kind] += 1
            made += 1
            report.add(failure)
            out.append(failure)
        if len(out) >= limit:
            break
    return out


def write_jsonl(experiences: Iterable[ExperienceCreate], path: Path | str) -> Path:
    """Write experiences as native-format JSONL (one ``ExperienceCreate`` per line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for exp in experiences:
            out.write(exp.model_dump_json(exclude_none=True) + "\n")
    return path


def read_jsonl(path: Path | str) -> list[ExperienceCreate]:
    """Read what :func:`write_jsonl` wrote."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [ExperienceCreate.model_validate_json(line) for line in lines if line.strip()]


def _label(
    exp: ExperienceCreate,
    step: int,
    kind: str,
    *,
    source: ExperienceCreate,
    confirmed_by: str | None,
    extra: Mapping[str, Any] | None = None,
) -> ExperienceCreate:
    agent = agent_name(exp.steps[step])
    attribution = Attribution(
        agent=agent,
        step=step,
        reason=f"[{kind}] {agent} {DESCRIBE[kind]} at step {step}",
        confidence=1.0,
        method="label",
    )
    artifacts = {k: v for k, v in exp.artifacts.items() if k not in {"program", "fault"}} | {
        "fault": {
            "type": kind,
            "step": step,
            "agent": agent,
            "confirmed": confirmed_by is not None,
            "confirmed_by": confirmed_by,
            "source_id": source.provenance.source_id,
            **(extra or {}),
        }
    }
    tags = [t for t in exp.tags if t != "synthetic"] + ["synthetic", f"fault:{kind}"]
    return exp.model_copy(
        update={
            "outcome": Outcome.failure,
            "score": 0.0,
            "attribution": attribution,
            "artifacts": artifacts,
            "tags": tags,
        }
    )


# -- team runs: change the program, replay ---------------------------------------------------------
def team_fault_sites(program: Mapping[str, Any], kind: str) -> list[int]:
    """The sub-steps of a team program where ``kind`` can be injected."""
    task = teams.task_from_json(program["task"])
    subs = task.subs
    last = len(subs) - 1
    numeric = task.recipe != "argmax"
    sites: list[int] = []
    for i, sub in enumerate(subs):
        lookup = sub.kind in {"lookup", "relation", "table"}
        ok = {
            "wrong_argument": lookup or (sub.kind == "compute" and sub.fn != "count_above"),
            "wrong_tool": sub.kind == "lookup" and not sub.ambiguous,
            "skipped_verification": sub.kind == "lookup" and sub.ambiguous,
            "hallucinated_value": (lookup and not sub.ambiguous)
            or (sub.kind == "compute" and numeric),
            "premature_final_answer": i < last and sub.kind != "table",
            "ignored_tool_error": True,
            "mis_delegation": program["style"] != "groupchat",
            "wrong_plan": True,
        }.get(kind, False)
        if ok:
            sites.append(i)
    return sites


def _inject_team(
    success: ExperienceCreate, kind: str, seed: int, report: SynthReport
) -> ExperienceCreate | None:
    program = success.artifacts["program"]
    sites = team_fault_sites(program, kind)
    if not sites:
        return None
    rng = random.Random(seed)
    truth = success.ground_truth or ""
    for _ in range(3):
        fault = teams.Fault(kind, rng.choice(sites), seed=rng.randrange(2**20))
        rendered = teams.replay(program, fault)
        if rendered.fault_step is None:
            continue
        if rendered.answer == truth:
            report.no_flip += 1
            continue
        task = teams.task_from_json(program["task"])
        team = teams.make_team(program["split"], program["style"], teams.DOMAIN_BY_KEY[task.domain])
        exp = teams.to_experience(
            task,
            team,
            rendered,
            truth=truth,
            seed=int(program["seed"]),
            source_id=f"{success.provenance.source_id}/{kind}/{fault.sub}",
        )
        exp = exp.model_copy(
            update={"provenance": exp.provenance.model_copy(update={"source": "synth"})}
        )
        return _label(
            exp,
            rendered.fault_step,
            kind,
            source=success,
            confirmed_by="replay",
            extra={"sub": fault.sub, "program": {**program, "fault": fault.__dict__}},
        )
    return None


# -- chat logs: edit the log, substitute the changed value downstream -----------------------------
AFFIRM = re.compile(r"^\W*(yes|yeah|yep|sure|confirm|correct|please (?:go ahead|proceed)|go ahead|"
                    r"proceed|that'?s (?:right|correct)|ok(?:ay)?)\b", re.IGNORECASE)  # fmt: skip
NUMBER = re.compile(r"(?<![\w#.])\$?\d[\d,]*(?:\.\d+)?(?![\w])")
IDLIKE = re.compile(r"#?[A-Za-z]*\d{3,}[\w]*|[a-z]+_[a-z]+_\d+")

CHAT_WORDING: dict[str, tuple[str, ...]] = {
    "done": (
        "Your request has been processed successfully. Is there anything else I can help you with?",
        "All set — I've taken care of that for you. Anything else?",
        "Everything is done on my side. Let me know if you need anything else.",
        "I have completed the change you asked for. Is there anything else?",
    ),
    "handoff": (
        "I'm going to transfer you to a human agent who can help with this.",
        "This needs a colleague; transferring you to a human agent now.",
    ),
    "change_mind": (
        "Oh, and use the other one we talked about instead.",
        "Actually, I'd rather go with the other option.",
        "Wait, make it the other one, please.",
        "Hmm, on second thought, switch to the alternative.",
    ),
    "error": (
        "Error: the operation could not be completed (status conflict).",
        "Error: payment method not found",
        "Error: item not available for this operation",
        "Error: request failed, please try again later",
    ),
}
STOP = "###STOP###"
NOT_ACTIONS = {"think", "transfer_to_human_agents"}


def _pick(pool: str, rng: random.Random, split: str) -> str:
    options = CHAT_WORDING[pool][(0 if split == "train" else 1) :: 2]
    return rng.choice(list(options))


def _write_tools(pool: Sequence[ExperienceCreate]) -> dict[str, list[str]]:
    """Per domain, the state-changing tools its successes call (for ``wrong_tool``)."""
    out: dict[str, set[str]] = {}
    for exp in pool:
        for step in exp.steps:
            for tool, _ in calls_of(step):
                if is_write(tool) and "transfer" not in tool:
                    out.setdefault(_domain_key(exp), set()).add(tool)
    return {k: sorted(v) for k, v in out.items()}


def _domain_key(exp: ExperienceCreate) -> str:
    return exp.domain or (exp.provenance.imported_from or "")


def _gold(exp: ExperienceCreate) -> set[str]:
    return {
        canon(str(a.get("name") or a.get("tool")), dict(a.get("kwargs") or a.get("args") or {}))
        for a in exp.gold_actions or []
        if isinstance(a, Mapping)
    }


def _writes(steps: Sequence[Step]) -> list[str]:
    return sorted(canon(t, a) for s in steps for t, a in calls_of(s) if is_write(t))


def _gold_flip(source: ExperienceCreate, steps: Sequence[Step]) -> bool:
    """Whether the state-changing calls no longer reproduce the gold ones the success made."""
    gold = _gold(source)
    before = [w for w in _writes(source.steps) if w in gold]
    if not before:
        return False
    after = _writes(steps)
    return any(w not in after for w in before)


def _replace_in(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_replace_in(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _replace_in(v, old, new) for k, v in value.items()}
    return value


def _substitute(steps: list[Step], start: int, old: str, new: str, *, tools: bool = True) -> None:
    """Carry a changed value into every later step (the run goes on with it)."""
    for i in range(start, len(steps)):
        s = steps[i]
        if role_of(s) == "tool" and not tools:
            continue
        update: dict[str, Any] = {}
        for name in ("content", "result", "error"):
            text = getattr(s, name)
            if text and old in text:
                update[name] = text.replace(old, new)
        if s.args and old in json.dumps(s.args, default=str):
            update["args"] = _replace_in(s.args, old, new)
        if update:
            steps[i] = s.model_copy(update=update)


def _renumber(steps: list[Step]) -> list[Step]:
    return [s.model_copy(update={"index": i}) for i, s in enumerate(steps)]


def _nudge_text(value: str, rng: random.Random) -> str:
    """A plausible wrong version of a number or id of the same shape."""
    digits = [i for i, c in enumerate(value) if c.isdigit()]
    if not digits:
        return value + "x"
    for _ in range(10):
        chars = list(value)
        if len(digits) >= 2 and rng.random() < 0.5:
            a, b = sorted(rng.sample(digits, 2))
            chars[a], chars[b] = chars[b], chars[a]
        else:
            j = rng.choice(digits[-3:])
            chars[j] = str((int(chars[j]) + rng.randint(1, 8)) % 10)
        out = "".join(chars)
        if out != value:
            return out
    return value + "1"


def _final_answer(steps: Sequence[Step]) -> str | None:
    return next((s.content for s in reversed(steps) if role_of(s) == "actor" and s.content), None)


def _inject_chat(
    success: ExperienceCreate, kind: str, seed: int, write_tools: Mapping[str, list[str]]
) -> ExperienceCreate | None:
    rng = random.Random(seed)
    split = "heldout" if "retail" in _domain_key(success) else "train"
    steps = list(success.steps)
    roles = [role_of(s) for s in steps]
    calls = [
        i
        for i, s in enumerate(steps)
        if calls_of(s) and roles[i] == "actor" and s.tool not in NOT_ACTIONS
    ]
    writes = [i for i in calls if any(is_write(t) for t, _ in calls_of(steps[i]))]
    writes = [i for i in writes if "transfer" not in (steps[i].tool or "")]
    confirmed: str | None = None
    label: int
    failed: set[int] = set()  # calls whose effect did not happen

    def result_index(i: int) -> int | None:
        j = i + 1
        return j if j < len(steps) and roles[j] == "tool" else None

    if kind == "wrong_argument":
        pool = writes if writes and rng.random() < 0.5 else calls
        candidates = [i for i in pool if _values_of(steps[i])]
        if not candidates:
            return None
        label = rng.choice(candidates)
        old = rng.choice(_values_of(steps[label]))
        same_shape = [
            v for v in _context_values(steps[:label]) if v != old and _shape(v) == _shape(old)
        ]
        new = rng.choice(same_shape) if same_shape and rng.random() < 0.6 else _nudge_text(old, rng)
        steps[label] = steps[label].model_copy(
            update={"args": _replace_in(steps[label].args, old, new)}
        )
        _substitute(steps, label + 1, old, new)
    elif kind == "wrong_tool":
        swaps = [
            (i, t)
            for i in writes
            for t in write_tools.get(_domain_key(success), [])
            if t != steps[i].tool and steps[i].tool and "calls" not in (steps[i].args or {})
        ]
        if not swaps:
            return None
        label, tool = rng.choice(swaps)
        steps[label] = steps[label].model_copy(update={"tool": tool})
        j = result_index(label)
        if j is not None:
            steps[j] = steps[j].model_copy(update={"tool": tool})
    elif kind == "skipped_verification":
        exchanges: list[tuple[int, int, int]] = []
        for i in writes:
            u = next(
                (
                    j
                    for j in range(i - 1, -1, -1)
                    if roles[j] in {"user", "actor"} and steps[j].content
                ),
                None,
            )
            if u is None or roles[u] != "user" or not AFFIRM.search(steps[u].content or ""):
                continue
            a = next(
                (j for j in range(u - 1, -1, -1) if roles[j] == "actor" and steps[j].content), None
            )
            asked = steps[a].content or "" if a is not None else ""
            if a is not None and ("?" in asked or "confirm" in asked.lower()):
                exchanges.append((a, u, i))
        if not exchanges:
            return None
        a, u, i = rng.choice(exchanges)
        steps = [s for j, s in enumerate(steps) if j not in {a, u}]
        label = i - 2
    elif kind == "hallucinated_value":
        # a misread tool output: a figure, count or id stated wrongly, then used downstream
        later_args = {v for i in writes for _, a in calls_of(steps[i]) for v in flat_values(a)}
        claims: list[tuple[int, list[str]]] = []
        for i, s in enumerate(steps):
            if roles[i] != "actor" or not s.content or calls_of(s):
                continue
            if not any(roles[j] == "tool" for j in range(max(0, i - 6), i)):
                continue
            seen = " ".join(
                (steps[j].result or "") for j in range(max(0, i - 6), i) if roles[j] == "tool"
            ).replace(",", "")
            numbers = [m.group(0) for m in NUMBER.finditer(s.content)]
            numbers = [
                x
                for x in numbers
                if len(x.strip("$")) >= 2 or x.strip("$").replace(",", "") in seen
            ]
            ids = [m.group(0) for m in IDLIKE.finditer(s.content) if m.group(0) in later_args]
            in_truth = [x for x in numbers if x.strip("$") in (success.ground_truth or "")]
            if in_truth:
                claims.extend([(i, in_truth)] * 6)  # the kind that reaches the answer
            elif ids:
                claims.extend([(i, ids)] * 2)  # the kind that reaches a later action
            elif numbers:
                claims.append((i, numbers))
        if not claims:
            return None
        label, numbers = rng.choice(claims)
        old = rng.choice(numbers)
        new = _nudge_text(old, rng)
        steps[label] = steps[label].model_copy(
            update={"content": (steps[label].content or "").replace(old, new)}
        )
        _substitute(steps, label + 1, old, new, tools=False)
        truth = success.ground_truth or ""
        if old.strip("$") in truth and new.strip("$") not in truth:
            confirmed = "answer"
    elif kind == "premature_final_answer":
        if not writes:
            return None
        w = rng.choice(writes)
        cut = w
        # cut before the confirmation exchange that led to the call, if any
        u = next(
            (j for j in range(w - 1, -1, -1) if roles[j] in {"user", "actor"} and steps[j].content),
            None,
        )
        if u is not None and roles[u] == "user" and AFFIRM.search(steps[u].content or ""):
            cut = u
        closing = _final_answer(success.steps)
        text = closing if closing and rng.random() < 0.5 else _pick("done", rng, split)
        head = steps[:cut]
        if not head or (role_of(head[-1]) == "actor" and not head[-1].content):
            return None
        steps = [*head, Step(index=0, agent=_actor_name(success), role="assistant", content=text)]
        label = len(steps) - 1
        steps.append(Step(index=0, agent="user", role="user", content=STOP))
    elif kind == "ignored_tool_error":
        erring = [i for i in writes if result_index(i) is not None]
        erring = [
            i
            for i in erring
            if any(roles[k] == "actor" and steps[k].content for k in range(i + 2, len(steps)))
        ]
        if not erring:
            return None
        i = rng.choice(erring)
        j = result_index(i)
        assert j is not None
        err = _pick("error", rng, split)
        steps[j] = steps[j].model_copy(update={"kind": "error", "result": err, "error": err})
        failed = {i}
        label = next(
            k for k in range(i + 2, len(steps)) if roles[k] == "actor" and steps[k].content
        )
    elif kind == "mis_delegation":
        if not writes:
            return None
        w = rng.choice(writes)
        cut = next((j for j in range(w - 1, 0, -1) if roles[j] == "user"), w)
        head = steps[: cut + 1]
        call = Step(
            index=0, agent=_actor_name(success), role="assistant", kind="tool_call",
            tool="transfer_to_human_agents", args={"summary": _pick("handoff", rng, split)},
        )  # fmt: skip
        result = Step(index=0, agent="tool", role="tool", kind="observation", tool=call.tool,
                      result="Transfer successful")  # fmt: skip
        steps = [*head, call, result]
        label = len(head)
        steps.append(Step(index=0, agent="user", role="user", content=STOP))
    elif kind == "user_misstatement":
        later_args = {v for i in calls for _, a in calls_of(steps[i]) for v in flat_values(a)}
        mentions: list[tuple[int, list[str]]] = []
        for i, s in enumerate(steps):
            if roles[i] != "user" or not s.content:
                continue
            values = [m.group(0) for m in IDLIKE.finditer(s.content) if m.group(0) in later_args]
            if values:
                mentions.append((i, values))
        if mentions and rng.random() < 0.5:
            label, values = rng.choice(mentions)
            old = rng.choice(values)
            new = _nudge_text(old, rng)
            steps[label] = steps[label].model_copy(
                update={"content": (steps[label].content or "").replace(old, new)}
            )
            _substitute(steps, label + 1, old, new)
        else:
            # the user's go-ahead asks for something else than the task wants; the agent obeys
            choices: list[tuple[int, int, str, list[str]]] = []
            for w in writes:
                u = next(
                    (j for j in range(w - 1, -1, -1) if roles[j] == "user" and steps[j].content),
                    None,
                )
                if u is None:
                    continue
                for old in _values_of(steps[w]):
                    same = [
                        v
                        for v in _context_values(steps[:w])
                        if v != old and _shape(v) == _shape(old)
                    ]
                    if same:
                        choices.append((u, w, old, same))
            if not choices:
                return None
            label, w, old, same = rng.choice(choices)
            new = rng.choice(same)
            extra = _pick("change_mind", rng, split)
            steps[label] = steps[label].model_copy(
                update={"content": f"{steps[label].content} {extra}"}
            )
            steps[w] = steps[w].model_copy(update={"args": _replace_in(steps[w].args, old, new)})
            _substitute(steps, w + 1, old, new)
    else:
        return None
    effective = [s for i, s in enumerate(steps) if i not in failed]
    steps = _renumber(steps)
    if confirmed is None and success.gold_actions and _gold_flip(success, effective):
        confirmed = "gold_actions"
    exp = success.model_copy(
        update={
            "steps": steps,
            "final_answer": _final_answer(steps),
            "provenance": success.provenance.model_copy(
                update={
                    "source": "synth",
                    "source_id": f"{success.provenance.source_id}/{kind}/{label}",
                }
            ),
        }
    )
    return _label(exp, label, kind, source=success, confirmed_by=confirmed)


def _actor_name(exp: ExperienceCreate) -> str:
    return next((s.agent or "assistant" for s in exp.steps if role_of(s) == "actor"), "assistant")


def _values_of(step: Step) -> list[str]:
    out = []
    for _, args in calls_of(step):
        for v in flat_values(args):
            if any(c.isdigit() for c in v) and len(v) >= 3:
                out.append(v)
    return sorted(set(out))


def _context_values(steps: Sequence[Step]) -> list[str]:
    found: set[str] = set()
    for s in steps:
        for text in (s.content, s.result):
            if text:
                found.update(m.group(0).strip('"') for m in IDLIKE.finditer(text))
    return sorted(found)


def _shape(value: str) -> str:
    return re.sub(r"[a-z]", "a", re.sub(r"[A-Z]", "A", re.sub(r"\d", "9", value)))


__all__ = [
    "DESCRIBE",
    "FAULTS",
    "TEAM_FAULTS",
    "SynthReport",
    "read_jsonl",
    "synthesize",
    "team_fault_sites",
    "write_jsonl",
]
