"""Templated multi-agent runs over a small simulated world, replayable with a fault injected.

Each run answers a multi-hop question (look facts up, compute, check, answer) with a team of named
agents: a lead (orchestrator, planner or manager), a web/search agent, a file reader, a coder, an
executor that prints what code returned, and a verifier. The world is a pure function
(:func:`fact`), so a run is a *program* (its sub-steps) that can be executed again with one
sub-step changed: :func:`render` re-runs the program and every later message is rewritten from the
values the changed program produces. That is what lets :mod:`kb.trace.synth` confirm by replay that
a fault flips the outcome.

Three log styles are rendered, all in the ``{question, ground_truth, history}`` multi-agent shape:
``orchestrated`` (a lead that thinks and addresses workers, ``Lead (-> Worker)``), ``groupchat``
(experts and a code executor, the first message carries the task and the plan) and ``plain`` (a
user and named assistants). Two disjoint *splits* exist, ``train`` and ``heldout``: different
domains, different agent names and different wording of every message, so that a tracer trained
on one can be measured on the other.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from kb.models import ExperienceCreate
from kb.trace.teamdata import CODE, FAULT_WORDING, FN_NAMES, TEAMS, WORDING, Domain
from kb.trace.teamworld import (
    DOMAIN_BY_KEY,
    DOMAINS,
    SPLITS,
    STYLES,
    YEARS,
    Sub,
    Task,
    _attr,
    _fmt,
    answer_text,
    compute,
    entity_name,
    execute,
    fact,
    make_task,
    related,
    stems,
    task_from_json,
    task_to_json,
)


# -- teams, styles and wording -------------------------------------------------------------------
@dataclass
class Team:
    """Who plays each slot in a run, and how a speaker is written into the history."""

    split: str
    style: str
    names: dict[str, str]

    def entry(self, slot: str, text: str, *, mode: str = "") -> dict[str, Any]:
        name = self.names[slot]
        if self.style == "orchestrated":
            if slot == "human":
                return {"role": "human", "content": text}
            if slot == "lead":
                suffix = mode or "thought"
                return {"role": f"{name} ({suffix})", "content": text}
            return {"role": name, "content": text}
        if self.style == "groupchat":
            if slot == "human":
                return {"role": "user", "content": text}
            role = "user" if slot == "exec" else "assistant"
            return {"role": role, "name": name, "content": text}
        if slot == "human":
            return {"role": "user", "content": text}
        return {"role": "assistant", "name": name, "content": text}


def make_team(split: str, style: str, domain: Domain) -> Team:
    names = {k: v.replace("{T}", domain.topic) for k, v in TEAMS[split][style].items()}
    return Team(split, style, names)


@dataclass
class Fault:
    """A change to a run: ``kind`` at sub-step ``sub`` (see :data:`kb.trace.synth.FAULTS`)."""

    kind: str
    sub: int
    seed: int = 0


@dataclass
class Rendered:
    history: list[dict[str, Any]]
    answer: str
    fault_step: int | None = None
    fault_slot: str | None = None


class _Writer:
    def __init__(self, team: Team, rng: random.Random):
        self.team, self.rng = team, rng
        self.history: list[dict[str, Any]] = []
        self.tags: list[str] = []
        self.variant = 0 if team.split == "train" else 1

    def pick(self, pool: Mapping[str, Sequence[str]], key: str, **kw: Any) -> str:
        options = pool[key][self.variant :: 2] or pool[key]
        return self.rng.choice(list(options)).format(**kw)

    def say(self, slot: str, text: str, *, tag: str = "", mode: str = "") -> int:
        self.history.append(self.team.entry(slot, text, mode=mode))
        self.tags.append(tag)
        return len(self.history) - 1


def render(task: Task, team: Team, *, seed: int, fault: Fault | None = None) -> Rendered:
    """Write the run of ``task`` by ``team`` as a multi-agent history, with ``fault`` applied.

    The same ``seed`` gives the same wording and filler, so a run and its faulty replay line up
    message by message until the fault.
    """
    rng = random.Random(seed)
    frng = random.Random(seed * 7919 + 13 + (fault.seed if fault else 0))
    w = _Writer(team, rng)
    domain = DOMAIN_BY_KEY[task.domain]
    subs = [replace(s, entities=list(s.entities), inputs=list(s.inputs)) for s in task.subs]
    names = team.names
    fault_step: int | None = None
    fault_slot: str | None = None
    kind = fault.kind if fault else ""
    at = fault.sub if fault else -1

    if kind == "wrong_plan":
        _corrupt_plan(task, subs[at], domain, frng)
    worker_of = {i: names[s.slot] for i, s in enumerate(subs)}

    plan_lines = []
    for i, sub in enumerate(subs):
        who = worker_of[i]
        plan_lines.append(_plan_line(w, task, sub, subs, domain, who))
    if rng.random() < 0.6 or team.style == "groupchat":
        plan_lines.append(w.pick(WORDING, "plan_check", who=names["check"]))
        check = True
    else:
        check = False
    plan_lines.append(w.pick(WORDING, "plan_answer"))
    plan = "\n".join(f"{k}. {line}" for k, line in enumerate(plan_lines, start=1))

    if team.style == "groupchat":
        plan_step = w.say(
            "lead", w.pick(WORDING, "group_head", q=task.question, plan=plan), tag="plan"
        )
    else:
        w.say("human", task.question, tag="question")
        plan_step = w.say("lead", w.pick(WORDING, "plan_head") + "\n" + plan, tag="plan")
    if kind == "wrong_plan":
        fault_step, fault_slot = plan_step, "lead"

    values: list[Any] = []
    premature_at = at if kind == "premature_final_answer" else -1
    for i, sub in enumerate(subs):
        worker_slot = sub.slot
        if kind == "mis_delegation" and i == at:
            worker_slot = _wrong_slot(sub.slot, frng)
        if team.style != "groupchat":
            if team.style == "orchestrated" and rng.random() < 0.5:
                w.say("lead", w.pick(WORDING, "ledger", who=names[worker_slot]), tag="ledger")
            step = w.say(
                "lead",
                _delegation(w, task, sub, subs, values, domain),
                tag=f"delegate{i}",
                mode=f"-> {names[worker_slot]}",
            )
            if kind == "mis_delegation" and i == at:
                fault_step, fault_slot = step, "lead"
        value, landed, slot = _work(w, task, sub, i, values, domain, worker_slot, fault, frng)
        if landed is not None:
            fault_step, fault_slot = landed, slot
        values.append(value)
        if i == premature_at:
            answer = answer_text(task, value)
            step = w.say(
                "lead",
                w.pick(FAULT_WORDING, "premature", answer=answer),
                tag="final",
                mode="thought",
            )
            fault_step, fault_slot = step, "lead"
            if rng.random() < 0.5:
                w.say("lead", w.pick(WORDING, "terminate"), tag="end", mode="termination condition")
            return Rendered(w.history, w.history[-1]["content"], fault_step, fault_slot)
        if team.style == "plain" and rng.random() < 0.3:
            w.say("lead", w.pick(WORDING, "filler_lead"), tag="filler")
    result = answer_text(task, values[-1])
    if check:
        if team.style != "groupchat":
            w.say(
                "lead",
                w.pick(WORDING, "delegate_check"),
                tag="delegate_check",
                mode="-> " + names["check"],
            )
        w.say("check", w.pick(WORDING, "verify_ok", out=result), tag="verify")
    w.say("lead", w.pick(WORDING, "final", answer=result), tag="final", mode="thought")
    if team.style == "groupchat" or rng.random() < 0.4:
        w.say("lead", w.pick(WORDING, "terminate"), tag="end", mode="termination condition")
    return Rendered(w.history, result, fault_step, fault_slot)


def _plan_line(w: _Writer, task: Task, sub: Sub, subs: list[Sub], domain: Domain, who: str) -> str:
    if sub.kind == "lookup" and sub.from_sub >= 0:
        return w.pick(
            WORDING, "plan_lookup_rel", attr=sub.attr, noun=domain.noun, year=sub.year, who=who
        )
    if sub.kind == "lookup":
        return w.pick(
            WORDING, "plan_lookup", attr=sub.attr, entity=sub.entity, year=sub.year, who=who
        )
    if sub.kind == "relation":
        return w.pick(
            WORDING,
            "plan_relation",
            noun=domain.noun,
            relation=domain.relation,
            entity=sub.entity,
            who=who,
        )
    if sub.kind == "table":
        return w.pick(WORDING, "plan_table", attr=sub.attr, year=sub.year, who=who)
    return w.pick(WORDING, "plan_compute", fn=_fn_phrase(sub), who=who)


def _fn_phrase(sub: Sub) -> str:
    name = FN_NAMES[sub.fn]
    if sub.fn == "count_above":
        return f"number of values above {_fmt(sub.threshold)}"
    return name


def _delegation(
    w: _Writer, task: Task, sub: Sub, subs: list[Sub], values: list[Any], domain: Domain
) -> str:
    if sub.kind == "lookup":
        entity = values[sub.from_sub] if sub.from_sub >= 0 else sub.entity
        return w.pick(WORDING, "delegate_lookup", attr=sub.attr, entity=entity, year=sub.year)
    if sub.kind == "relation":
        return w.pick(
            WORDING,
            "delegate_relation",
            noun=domain.noun,
            relation=domain.relation,
            entity=sub.entity,
        )
    if sub.kind == "table":
        return w.pick(WORDING, "delegate_table", attr=sub.attr, year=sub.year, noun=domain.noun)
    args = ", ".join(_arg_text(task, values[j]) for j in sub.inputs)
    return w.pick(WORDING, "delegate_compute", fn=_fn_phrase(sub), args=args)


def _arg_text(task: Task, value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v, 2) for v in value) + "]"
    return _fmt(value, 2) if isinstance(value, float) and value != round(value) else _fmt(value)


def _wrong_slot(slot: str, rng: random.Random) -> str:
    if slot in {"search", "file"}:
        return rng.choice(["code", "check"])
    return rng.choice(["search", "file"])


def _corrupt_plan(task: Task, sub: Sub, domain: Domain, rng: random.Random) -> None:
    """A plausible but wrong plan item: another year, another entity, or another formula."""
    if sub.kind == "compute":
        swaps = {"diff": "sum", "sum": "diff", "ratio": "diff", "change": "diff"}
        if sub.fn in swaps:
            sub.fn = swaps[sub.fn]
            if sub.fn == "diff" and len(sub.inputs) > 2:
                sub.inputs = sub.inputs[:2]
            return
        if sub.fn == "count_above":
            sub.threshold = round(sub.threshold * rng.choice([0.6, 1.5]), 0)
            return
        sub.inputs = sub.inputs[:-1]  # argmax over a subset
        return
    if sub.kind in {"lookup", "table"} and rng.random() < 0.5:
        sub.year = rng.choice([y for y in YEARS if y != sub.year])
        return
    if sub.kind == "lookup" and sub.from_sub < 0:
        sub.entity = _confuse(domain, sub.entity, rng)
        return
    if sub.kind == "relation":
        sub.entity = _confuse(domain, sub.entity, rng)
        return
    sub.year = rng.choice([y for y in YEARS if y != sub.year])


def _confuse(domain: Domain, entity: str, rng: random.Random) -> str:
    stem = next((s for s in stems(domain) if entity_name(domain, s) == entity), entity)
    return entity_name(domain, stem, rng.choice(domain.confusers))


def _work(
    w: _Writer,
    task: Task,
    sub: Sub,
    i: int,
    values: list[Any],
    domain: Domain,
    slot: str,
    fault: Fault | None,
    frng: random.Random,
) -> tuple[Any, int | None, str | None]:
    """Messages of one sub-step; returns its value and the fault's step when it lands here."""
    team = w.team
    kind = fault.kind if fault is not None and fault.sub == i else ""
    if kind == "mis_delegation":
        return _misdelegated(w, task, sub, values, domain, slot, frng)
    if sub.kind in {"lookup", "relation", "table"}:
        return _lookup(w, task, sub, i, values, domain, kind, frng)
    args = [values[j] for j in sub.inputs]
    if kind == "wrong_argument":
        j = frng.randrange(len(args))
        args[j] = _nudge(args[j], frng)
    true_out = compute(task, sub, args)
    out = answer_text(task, true_out)
    code = _code(task, sub, args)
    coder = "code"
    if team.style == "groupchat":
        text = w.pick(WORDING, "code_intro", fn=_fn_phrase(sub)) + f"\n```python\n{code}\n```"
    else:
        text = w.pick(WORDING, "code_intro", fn=_fn_phrase(sub)) + f"\n```python\n{code}\n```"
    code_step = w.say(coder, text, tag=f"act{i}")
    fault_step: int | None = code_step if kind == "wrong_argument" else None
    if kind == "ignored_tool_error":
        w.say("exec", w.pick(FAULT_WORDING, "error_exec"), tag=f"tool{i}")
        invented = _nudge(true_out, frng) if not isinstance(true_out, str) else true_out
        if isinstance(true_out, str):
            others = [s.entity for s in task.subs if s.kind == "lookup" and s.entity != true_out]
            invented = frng.choice(others) if others else true_out
        out = answer_text(task, invented)
        step = w.say(
            coder,
            w.pick(FAULT_WORDING, "ignored_error_code", fn=_fn_phrase(sub), out=out),
            tag=f"report{i}",
        )
        return invented, step, coder
    w.say("exec", w.pick(WORDING, "exec_ok", out=out), tag=f"tool{i}")
    if kind == "hallucinated_value" and not isinstance(true_out, str):
        invented = _nudge(true_out, frng)
        out = answer_text(task, invented)
        step = w.say(
            coder, w.pick(WORDING, "code_report", fn=_fn_phrase(sub), out=out), tag=f"report{i}"
        )
        return invented, step, coder
    if w.rng.random() < 0.6:
        w.say(coder, w.pick(WORDING, "code_report", fn=_fn_phrase(sub), out=out), tag=f"report{i}")
    return true_out, fault_step, coder if fault_step is not None else None


def _code(task: Task, sub: Sub, args: list[Any]) -> str:
    template = CODE[sub.fn]
    args = [[float(v) for v in a] if isinstance(a, list) else float(a) for a in args]
    if sub.fn in {"diff", "ratio", "change"}:
        return template.format(a=args[0], b=args[1], d=task.decimals)
    if sub.fn == "sum":
        return template.format(args=", ".join(map(str, args)), d=task.decimals)
    if sub.fn == "argmax":
        entities = [s.entity for s in task.subs if s.kind == "lookup"]
        pairs = ", ".join(f"{e!r}: {v}" for e, v in zip(entities, args, strict=False))
        return template.format(pairs=pairs)
    return template.format(args=", ".join(map(str, args[0])), t=sub.threshold)


def _nudge(value: Any, rng: random.Random) -> Any:
    """A plausible wrong value of the same shape (digits swapped, scaled, off by a little)."""
    if isinstance(value, list):
        out = list(value)
        j = rng.randrange(len(out))
        out[j] = _nudge(out[j], rng)
        return out
    if isinstance(value, str):
        return value
    v = float(value)
    decimals = 0 if v == round(v) else (1 if round(v, 1) == v else 2)
    for _ in range(10):
        choice = rng.random()
        if choice < 0.4:
            new = v * rng.choice([0.5, 0.8, 0.9, 1.1, 1.25, 1.5, 2.0])
        elif choice < 0.7:
            text = str(round(abs(v)))
            if len(text) >= 2:
                k = rng.randrange(len(text) - 1)
                text = text[:k] + text[k + 1] + text[k] + text[k + 2 :]
            new = float(text) * (1 if v >= 0 else -1)
        else:
            new = v + rng.choice([-1, 1]) * max(1.0, abs(v) * rng.uniform(0.03, 0.3))
        new = round(new, decimals)
        if new != round(v, decimals):
            return int(new) if decimals == 0 else new
    return v + 1


def _lookup(
    w: _Writer,
    task: Task,
    sub: Sub,
    i: int,
    values: list[Any],
    domain: Domain,
    kind: str,
    frng: random.Random,
) -> tuple[Any, int | None, str | None]:
    slot = sub.slot
    team = w.team
    site = w.rng.choice(domain.sites)
    act = replace(sub, entities=list(sub.entities))
    if sub.from_sub >= 0:
        act.entity = str(values[sub.from_sub])
    if kind == "wrong_argument":
        if act.kind == "table" or (act.kind == "lookup" and frng.random() < 0.5):
            act.year = frng.choice([y for y in YEARS if y != act.year])
        else:
            act.entity = _confuse(domain, act.entity, frng)
    if kind == "wrong_tool":
        act.sibling = True
    entity = act.entity
    attr_obj = _attr(domain, act.attr) if act.attr else None
    value: Any
    if act.kind == "relation":
        value = related(domain, entity)
        query = f"{domain.relation} of {entity}"
    elif act.kind == "table":
        value = execute(task, act, values)
        query = ""
    else:
        value = execute(task, act, values)
        query = f"{act.attr} {entity} {act.year}"
        if kind == "wrong_tool":
            assert attr_obj is not None
            query = f"{attr_obj.sibling} {entity} {act.year}"
    fault_step: int | None = None
    # the action
    if act.kind == "table":
        fname = f"{domain.key}_{act.attr.replace(' ', '_')}_{act.year}.csv"
        step_tool = w.say(slot, w.pick(WORDING, "file_act", file=fname), tag=f"act{i}")
    elif slot == "file" and team.style != "groupchat":
        stem = entity.replace(" ", "_").lower()
        fname = f"{stem}_{act.year}.pdf" if act.kind == "lookup" else f"{stem}_profile.pdf"
        if kind == "wrong_tool":
            fname = f"{stem}_{act.year}_summary.pdf"
        step_tool = w.say(slot, w.pick(WORDING, "file_act", file=fname), tag=f"act{i}")
    elif team.style == "groupchat":
        code = f'results = web_search("{query}")\nprint(results)'
        step_tool = w.say(slot, f"Let me search for it.\n```python\n{code}\n```", tag=f"act{i}")
    else:
        step_tool = w.say(slot, w.pick(WORDING, "search_act", query=query), tag=f"act{i}")
    if kind in {"wrong_argument", "wrong_tool"} and step_tool is not None:
        fault_step = step_tool
    if team.style == "orchestrated" and act.kind != "table" and w.rng.random() < 0.3:
        w.say(slot, w.pick(WORDING, "filler_search"), tag="filler")
    out_slot = "exec" if team.style == "groupchat" else slot
    assert attr_obj is not None or act.kind == "relation"
    unit = attr_obj.unit if attr_obj else ""

    def invented_report(wording: str, table: str) -> tuple[Any, int | None, str]:
        """The fault's report: a value the run never saw, in ``wording`` (``table`` for a
        table's values)."""
        invented = (
            _nudge(value, frng) if act.kind != "relation" else _confuse(domain, str(value), frng)
        )
        if act.kind == "relation":
            text = w.pick(
                WORDING, "report_relation", relation=domain.relation, entity=entity, other=invented
            )
        elif act.kind == "table":
            assert attr_obj is not None
            text = table.format(", ".join(_fmt(v, attr_obj.decimals) for v in invented))
        else:
            assert attr_obj is not None
            text = w.pick(
                FAULT_WORDING,
                wording,
                attr=act.attr,
                entity=entity,
                year=act.year,
                value=_fmt(invented, attr_obj.decimals),
                unit=unit,
            )
        return invented, w.say(slot, text, tag=f"report{i}"), slot

    if kind == "ignored_tool_error":
        w.say(out_slot, w.pick(FAULT_WORDING, "error_page", site=site), tag=f"tool{i}")
        return invented_report("ignored_error", "Values: {}")
    # what the tool shows
    if act.kind == "relation":
        line = w.pick(
            WORDING, "relation_line", entity=entity, relation=domain.relation, other=value
        )
        w.say(out_slot, _page(w, site, line, groupchat=team.style == "groupchat"), tag=f"tool{i}")
    elif act.kind == "table":
        assert attr_obj is not None
        rows = "\n".join(
            f"| {n} | {_fmt(v, attr_obj.decimals)} |"
            for n, v in zip(act.entities, value, strict=True)
        )
        w.say(
            "exec" if team.style == "groupchat" else slot,
            f"| {domain.noun} | {act.attr} {act.year} ({unit}) |\n|---|---|\n{rows}",
            tag=f"tool{i}",
        )
    else:
        assert attr_obj is not None
        label = attr_obj.sibling if act.sibling else act.attr
        line = w.pick(
            WORDING,
            "fact_line",
            entity=entity,
            label=label,
            year=act.year,
            value=_fmt(value, attr_obj.decimals),
            unit=unit,
        )
        if sub.ambiguous and not act.sibling:
            other = fact(domain, entity, attr_obj, act.year, sibling=True)
            line_b = w.pick(
                WORDING,
                "fact_line",
                entity=entity,
                label=attr_obj.sibling,
                year=act.year,
                value=_fmt(other, attr_obj.decimals),
                unit=unit,
            )
            page = w.pick(WORDING, "page_two", site=site, line_a=line_b, line_b=line)
            w.say(out_slot, page if team.style != "groupchat" else _exec(w, page), tag=f"tool{i}")
            checker = "check" if w.rng.random() < 0.6 else slot
            if kind == "skipped_verification":
                step = w.say(
                    checker,
                    w.pick(
                        FAULT_WORDING,
                        "skip_check",
                        bad=_fmt(other, attr_obj.decimals),
                        unit=unit,
                        attr=act.attr,
                    ),
                    tag=f"resolve{i}",
                )
                return other, step, checker
            w.say(
                checker,
                w.pick(
                    WORDING,
                    "resolve",
                    bad=_fmt(other, attr_obj.decimals),
                    good=_fmt(value, attr_obj.decimals),
                    unit=unit,
                    sibling=attr_obj.sibling,
                    attr=act.attr,
                ),
                tag=f"resolve{i}",
            )
            return value, fault_step, slot if fault_step is not None else None
        w.say(out_slot, _page(w, site, line, groupchat=team.style == "groupchat"), tag=f"tool{i}")
    # the report
    if kind == "hallucinated_value":
        return invented_report("hallucinated", "The values are {}.")
    if act.kind == "relation":
        w.say(
            slot,
            w.pick(
                WORDING, "report_relation", relation=domain.relation, entity=entity, other=value
            ),
            tag=f"report{i}",
        )
    elif act.kind == "lookup":
        assert attr_obj is not None
        w.say(
            slot,
            w.pick(
                WORDING,
                "report",
                attr=act.attr,
                entity=entity,
                year=act.year,
                value=_fmt(value, attr_obj.decimals),
                unit=unit,
            ),
            tag=f"report{i}",
        )
    return value, fault_step, slot if fault_step is not None else None


def _exec(w: _Writer, text: str) -> str:
    return w.pick(WORDING, "exec_ok", out=text)


def _page(w: _Writer, site: str, line: str, *, groupchat: bool) -> str:
    text = w.pick(WORDING, "page_one", site=site, line=line)
    return _exec(w, text) if groupchat else text


def _misdelegated(
    w: _Writer,
    task: Task,
    sub: Sub,
    values: list[Any],
    domain: Domain,
    slot: str,
    frng: random.Random,
) -> tuple[Any, int | None, str | None]:
    """The wrong worker does its best: a coder guesses a fact, a searcher guesses a result."""
    if sub.kind in {"lookup", "relation", "table"}:
        true = execute(task, sub, values)
        if sub.kind == "relation":
            guess: Any = _confuse(domain, str(true), frng)
            text = (
                f"I can't look that up; I believe the {domain.relation} of {sub.entity} is {guess}."
            )
        elif sub.kind == "table":
            guess = _nudge(true, frng)
            text = "I have no file viewer; estimated values: " + ", ".join(_fmt(v) for v in guess)
        else:
            attr = _attr(domain, sub.attr)
            guess = _nudge(true, frng)
            entity = values[sub.from_sub] if sub.from_sub >= 0 else sub.entity
            text = w.pick(
                FAULT_WORDING,
                "misdelegated_lookup",
                attr=sub.attr,
                entity=entity,
                year=sub.year,
                value=_fmt(guess, attr.decimals),
                unit=attr.unit,
            )
        w.say(slot, text, tag="work")
        return guess, None, None
    true = compute(task, sub, [values[j] for j in sub.inputs])
    guess = _nudge(true, frng) if not isinstance(true, str) else true
    if isinstance(true, str):
        others = [s.entity for s in task.subs if s.kind == "lookup" and s.entity != true]
        guess = frng.choice(others) if others else true
    w.say(
        slot, w.pick(WORDING, "search_act", query=f"{_fn_phrase(sub)} of the figures"), tag="work"
    )
    w.say(
        slot,
        w.pick(
            FAULT_WORDING, "misdelegated_compute", fn=_fn_phrase(sub), out=answer_text(task, guess)
        ),
        tag="work",
    )
    return guess, None, None


# -- success logs ---------------------------------------------------------------------------------
def to_experience(
    task: Task, team: Team, rendered: Rendered, *, truth: str, seed: int, source_id: str
) -> ExperienceCreate:
    """A rendered run as an experience, via the multi-agent importer (so the shape is the one
    ``kb import`` gives such logs)."""
    from kb.importers import from_multiagent

    record = {
        "question": task.question,
        "ground_truth": truth,
        "history": rendered.history,
        "id": source_id,
        "outcome": "success" if rendered.answer == truth else "failure",
    }
    exp = from_multiagent(record, source="kb.trace.teams", domain=task.domain)
    return exp.model_copy(
        update={
            "artifacts": {
                "program": {
                    "task": task_to_json(task),
                    "split": team.split,
                    "style": team.style,
                    "seed": seed,
                }
            },
            "tags": ["synthetic", f"split:{team.split}", f"style:{team.style}"],
        }
    )


def generate_team_logs(
    n: int,
    *,
    seed: int = 0,
    split: str = "train",
    styles: Sequence[str] = STYLES,
    domains: Sequence[str] | None = None,
) -> list[ExperienceCreate]:
    """``n`` successful multi-agent runs of the ``split``'s domains, agent names and wording.

    Each carries its replayable program in ``artifacts["program"]``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    pool = [d for d in DOMAINS if d.split == split and (domains is None or d.key in domains)]
    if not pool:
        raise ValueError(f"no domain of split {split!r} among {domains}")
    rng = random.Random(f"teams|{seed}|{split}")
    out = []
    for k in range(n):
        domain = pool[k % len(pool)]
        style = styles[(k // len(pool)) % len(styles)]
        task = make_task(domain, rng)
        team = make_team(split, style, domain)
        run_seed = rng.randrange(2**31)
        rendered = render(task, team, seed=run_seed)
        truth = rendered.answer
        out.append(
            to_experience(
                task,
                team,
                rendered,
                truth=truth,
                seed=run_seed,
                source_id=f"team-{split}-{seed}-{k}",
            )
        )
    return out


def replay(program: Mapping[str, Any], fault: Fault | None) -> Rendered:
    """Run a stored program again, with ``fault`` applied."""
    task = task_from_json(program["task"])
    domain = DOMAIN_BY_KEY[task.domain]
    team = make_team(program["split"], program["style"], domain)
    return render(task, team, seed=int(program["seed"]), fault=fault)
