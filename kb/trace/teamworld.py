"""The simulated world of the templated team runs: facts, questions and the programs that
answer them. A pure function of its inputs, so a program can be executed again (replayed) with
one sub-step changed (see :mod:`kb.trace.teams`)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kb.trace.teamdata import DOMAINS, Attr, Domain

SPLITS = ("train", "heldout")
STYLES = ("orchestrated", "groupchat", "plain")
RECIPES = ("diff", "ratio", "change", "total", "argmax", "count_above", "chain")
YEARS = tuple(range(2015, 2024))


# -- the world ------------------------------------------------------------------------------------
DOMAIN_BY_KEY = {d.key: d for d in DOMAINS}

SYLLABLES = (
    "kel", "dor", "var", "holt", "min", "ast", "bre", "lan", "tor", "vik", "sel", "ora", "pen",
    "rud", "ghal", "mar", "ith", "quen", "zal", "bor", "ela", "fen", "gar", "lis", "nor", "pru",
    "sta", "wen", "yor", "cal", "dun", "eth",
)  # fmt: skip


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def stems(domain: Domain, count: int = 40) -> list[str]:
    """Deterministic name stems for a domain's entities."""
    out: list[str] = []
    i = 0
    while len(out) < count:
        a = SYLLABLES[int(_unit(domain.key, "a", i) * len(SYLLABLES))]
        b = SYLLABLES[int(_unit(domain.key, "b", i) * len(SYLLABLES))]
        stem = (a + b).capitalize()
        if stem not in out and a != b:
            out.append(stem)
        i += 1
    return out


def entity_name(domain: Domain, stem: str, pattern: str | None = None) -> str:
    n = 100 + int(_unit(domain.key, stem, "n") * 9000)
    return (pattern or domain.pattern).format(A=stem, a=stem.lower(), N=n, M=n + 7)


def fact(domain: Domain, entity: str, attr: Attr, year: int, *, sibling: bool = False) -> float:
    """The value of ``attr`` for ``entity`` in ``year`` (or of its confusable sibling figure)."""
    u = _unit(domain.key, entity, attr.key, sibling)
    base = attr.lo * (attr.hi / attr.lo) ** u if attr.lo > 0 else attr.lo + (attr.hi - attr.lo) * u
    drift = 0.015 + 0.06 * _unit(domain.key, entity, attr.key, "drift")
    value = base * (1 + drift) ** (year - YEARS[0]) * (1 + 0.02 * (_unit(entity, year) - 0.5))
    return round(value, attr.decimals)


def related(domain: Domain, entity: str) -> str:
    """The entity that stands in the domain's relation to ``entity``."""
    names = [entity_name(domain, s) for s in stems(domain)]
    others = [n for n in names if n != entity]
    return others[int(_unit(domain.key, entity, "rel") * len(others))]


# -- tasks and their programs -------------------------------------------------------------------
@dataclass
class Sub:
    """One sub-step of a run's program."""

    kind: str  # lookup | relation | table | compute
    slot: str  # search | file | code: the worker that should do it
    entity: str = ""
    attr: str = ""
    year: int = 0
    entities: list[str] = field(default_factory=list)
    fn: str = ""
    inputs: list[int] = field(default_factory=list)
    threshold: float = 0.0
    sibling: bool = False
    ambiguous: bool = False
    from_sub: int = -1  # a relation's target comes from another sub-step


@dataclass
class Task:
    domain: str
    recipe: str
    question: str
    subs: list[Sub]
    unit: str
    decimals: int


def _fmt(value: float | str, decimals: int = 0) -> str:
    if isinstance(value, str):
        return value
    if decimals == 0:
        return f"{round(value):,}"
    return f"{value:,.{decimals}f}"


def make_task(domain: Domain, rng: random.Random, recipe: str | None = None) -> Task:
    """A random multi-hop question of ``domain`` with the program that answers it."""
    recipe = recipe or rng.choice(RECIPES)
    attr = rng.choice(domain.attrs)
    names = [entity_name(domain, s) for s in rng.sample(stems(domain), 6)]
    year = rng.choice(YEARS[2:])
    x, y, z = names[:3]
    noun, a, u = domain.noun, attr.key, attr.unit
    look = "search" if rng.random() < 0.7 else "file"
    subs: list[Sub]
    if recipe == "diff":
        subs = [Sub("lookup", look, x, a, year), Sub("lookup", look, y, a, year)]
        subs.append(Sub("compute", "code", fn="diff", inputs=[0, 1]))
        q = f"By how much did the {a} of {x} exceed that of {y} in {year}? Answer in {u}."
        unit, dec = u, attr.decimals
    elif recipe == "ratio":
        subs = [Sub("lookup", look, x, a, year), Sub("lookup", look, y, a, year)]
        subs.append(Sub("compute", "code", fn="ratio", inputs=[0, 1]))
        q = f"What was the ratio of the {a} of {x} to that of {y} in {year}, to two decimals?"
        unit, dec = "", 2
    elif recipe == "change":
        y0 = rng.choice([v for v in YEARS if v < year])
        subs = [Sub("lookup", look, x, a, y0), Sub("lookup", look, x, a, year)]
        subs.append(Sub("compute", "code", fn="change", inputs=[0, 1]))
        q = f"By what percentage did the {a} of the {noun} {x} change from {y0} to {year}? One decimal."
        unit, dec = "%", 1
    elif recipe == "total":
        subs = [Sub("lookup", look, n, a, year) for n in (x, y, z)]
        subs.append(Sub("compute", "code", fn="sum", inputs=[0, 1, 2]))
        q = f"What was the combined {a} of {x}, {y} and {z} in {year}, in {u}?"
        unit, dec = u, attr.decimals
    elif recipe == "argmax":
        subs = [Sub("lookup", look, n, a, year) for n in (x, y, z)]
        subs.append(Sub("compute", "code", fn="argmax", inputs=[0, 1, 2]))
        q = f"Which of the {_plural(noun)} {x}, {y} and {z} had the highest {a} in {year}?"
        unit, dec = "", 0
    elif recipe == "count_above":
        group = names[:5]
        values = [fact(domain, n, attr, year) for n in group]
        threshold = round(sorted(values)[rng.randint(1, 3)] * 0.98 + 0.02 * max(values), 0)
        subs = [Sub("table", "file", attr=a, year=year, entities=group)]
        subs.append(Sub("compute", "code", fn="count_above", inputs=[0], threshold=threshold))
        q = (
            f"In the attached {year} table of {_plural(noun)} ({', '.join(group)}), how many had a {a} "
            f"above {_fmt(threshold)} {u}?"
        )
        unit, dec = _plural(noun), 0
    else:  # chain
        subs = [Sub("relation", look, x), Sub("lookup", look, "", a, year, from_sub=0)]
        q = f"What was the {a} of the {domain.relation} of {x} in {year}, in {u}?"
        unit, dec = u, attr.decimals
    for sub in subs:
        if sub.kind == "lookup" and rng.random() < 0.35:
            sub.ambiguous = True
    return Task(domain.key, recipe, q, subs, unit, dec)


def _plural(noun: str) -> str:
    return noun + ("es" if noun.endswith(("sh", "ch", "s")) else "s")


def _attr(domain: Domain, key: str) -> Attr:
    return next(a for a in domain.attrs if a.key == key)


def execute(task: Task, sub: Sub, values: Sequence[Any]) -> Any:
    """What one sub-step yields on the world, given the values of the earlier ones."""
    domain = DOMAIN_BY_KEY[task.domain]
    if sub.kind == "relation":
        return related(domain, sub.entity)
    if sub.kind == "lookup":
        entity = values[sub.from_sub] if sub.from_sub >= 0 else sub.entity
        return fact(domain, str(entity), _attr(domain, sub.attr), sub.year, sibling=sub.sibling)
    if sub.kind == "table":
        attr = _attr(domain, sub.attr)
        return [fact(domain, n, attr, sub.year, sibling=sub.sibling) for n in sub.entities]
    return compute(task, sub, [values[i] for i in sub.inputs])


def compute(task: Task, sub: Sub, args: Sequence[Any]) -> Any:
    nums = [float(a) for a in args] if sub.fn != "count_above" else []
    if sub.fn == "diff":
        return round(nums[0] - nums[1], task.decimals)
    if sub.fn == "ratio":
        return round(nums[0] / nums[1], 2) if nums[1] else 0.0
    if sub.fn == "change":
        return round((nums[1] - nums[0]) / nums[0] * 100, 1) if nums[0] else 0.0
    if sub.fn == "sum":
        return round(sum(nums), task.decimals)
    if sub.fn == "argmax":
        entities = [s.entity for s in task.subs if s.kind == "lookup"]
        return entities[max(range(len(nums)), key=nums.__getitem__)]
    if sub.fn == "count_above":
        return sum(float(v) > sub.threshold for v in args[0])
    raise ValueError(f"unknown function {sub.fn!r}")


def answer_text(task: Task, value: Any) -> str:
    if isinstance(value, str):
        return value
    if task.recipe == "count_above":
        return str(int(value))
    text = _fmt(value, task.decimals)
    return f"{text}%" if task.unit == "%" else text


def task_to_json(task: Task) -> dict[str, Any]:
    return {**asdict(task), "subs": [asdict(s) for s in task.subs]}


def task_from_json(data: Mapping[str, Any]) -> Task:
    subs = [Sub(**s) for s in data["subs"]]
    return Task(
        domain=data["domain"],
        recipe=data["recipe"],
        question=data["question"],
        subs=subs,
        unit=data["unit"],
        decimals=int(data["decimals"]),
    )
