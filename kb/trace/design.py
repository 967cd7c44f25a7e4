"""The inputs of the trained tracer: per-step structure and text, for any log shape.

For every step: the hand-made signals of :mod:`kb.trace.features`, structural facts that hold for
multi-agent chats (who spoke, to whom, where values came from and where they went, where a final
answer first appears), and text: sentence embeddings of the step and of its two neighbours, and
how close the step is to the task, the final answer and its neighbours.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kb.models import ExperienceCreate, Step
from kb.trace.agents import addressee, agent_name
from kb.trace.features import ERROR_RE, FEATURES, Embed, extract, role_of, step_text
from kb.trace.heuristic import score as heuristic_score

STRUCT: tuple[str, ...] = (
    "pos_log",  # log position from the start
    "from_end",  # 1 at the first step, 0 at the last
    "n_log",  # log length of the log
    "first_actor",  # the first acting step
    "first_of_agent",  # the agent's first step
    "agent_share",  # share of the log's steps by this agent
    "agent_order",  # the agent's rank of first appearance
    "same_agent_prev",  # the previous step is by the same agent
    "addresses",  # the step addresses or names another agent
    "next_is_addressee",  # and that agent speaks next
    "after_error",  # the previous step reports an error
    "has_code",  # a code block
    "plan_like",  # a numbered list (a plan)
    "answer_origin2",  # share of the final answer's values that first appear here
    "downstream",  # how many later steps by others reuse values first stated here
    "near_miss",  # states a number close to, but not equal to, one just seen (misread)
    "unsupported",  # states numbers that no earlier step contains
    "has_truth",  # contains the ground truth (when known)
    "variant",  # introduces a value or name that is a variant of one already seen (2015 for 2018)
    "worse_value",  # takes a figure from a source where another figure fits the task better
    "odd_delegation",  # an instruction that reads like those given to another agent
    "odd_response",  # a reply unlike the agent's other messages
    "plan_unfinished",  # a final answer while items of the plan have not been worked on
    "sim_task",  # text similarity to the task
    "sim_answer",  # to the final answer
    "sim_prev",  # to the previous step
    "sim_next",  # to the next step
    "sim_later",  # best similarity to any later step
)
TEXT_BLOCKS: tuple[str, ...] = ("step", "prev", "next")
DENSE: tuple[str, ...] = (*FEATURES, *STRUCT, "heuristic")
"""Hand-made, structural, and the heuristic back end's score (its hand-chosen weighting of the
hand-made signals: one column a fit on few labels can lean on)."""
MAX_CHARS = 500

NUM_RE = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
TOKEN_RE = re.compile(r"#?[A-Za-z]*\d[\w.\-]*|[A-Z][a-z]+(?: [A-Z][a-z]+)*")
FINAL_RE = re.compile(r"\b(final answer|the answer is|answer:)", re.IGNORECASE)
PLAN_RE = re.compile(r"^\s*(?:\d+[.)]|[-*])\s+\S", re.MULTILINE)


def embed_text(step: Step) -> str:
    """What is embedded for a step: who spoke and what they said (truncated)."""
    return f"{agent_name(step)}: {step_text(step)[:MAX_CHARS]}"


@dataclass
class StepText:
    """Embeddings of a log: one row per step, plus the task and the final answer."""

    steps: np.ndarray
    task: np.ndarray
    answer: np.ndarray


class EmbedCache:
    """Embeds each distinct text once (training sets repeat most steps across faults)."""

    def __init__(self, embed: Embed, *, batch: int = 4096):
        self.embed = embed
        self.batch = batch
        self.vectors: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        for start in range(0, len(missing), self.batch):
            chunk = missing[start : start + self.batch]
            out = np.asarray(self.embed(chunk), dtype=np.float32)
            for text, vector in zip(chunk, out, strict=True):
                self.vectors[text] = vector
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([self.vectors[t] for t in texts])


def final_text(experience: ExperienceCreate) -> str:
    return (experience.final_answer or "")[:MAX_CHARS]


def texts_of(experience: ExperienceCreate) -> list[str]:
    """Every text :func:`encode` embeds for an experience."""
    return [
        *(embed_text(s) for s in experience.steps),
        experience.task[:MAX_CHARS],
        final_text(experience) or "(none)",
    ]


def encode(experience: ExperienceCreate, embed: Embed) -> StepText:
    vectors = np.asarray(embed(texts_of(experience)), dtype=np.float32)
    n = len(experience.steps)
    return StepText(steps=vectors[:n], task=vectors[n], answer=vectors[n + 1])


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(na * nb, 1e-9)


def neighbours(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(previous step's vector, next step's vector)`` per step, zeros at the ends."""
    prev = np.zeros_like(vectors)
    nxt = np.zeros_like(vectors)
    if len(vectors) > 1:
        prev[1:] = vectors[:-1]
        nxt[:-1] = vectors[1:]
    return prev, nxt


def _numbers(text: str) -> list[float]:
    out = []
    for token in NUM_RE.findall(text):
        try:
            out.append(float(token.replace(",", "")))
        except ValueError:
            continue
    return out


def _tokens(text: str) -> set[str]:
    return {t.strip(".,").lower() for t in TOKEN_RE.findall(text) if len(t) >= 2}


def structure(experience: ExperienceCreate, text: StepText | None = None) -> np.ndarray:
    """The ``(steps, len(STRUCT))`` structural and similarity features."""
    steps = experience.steps
    n = len(steps)
    out = np.zeros((n, len(STRUCT)), dtype=np.float64)
    if n == 0:
        return out
    col = {name: i for i, name in enumerate(STRUCT)}
    texts = [step_text(s) for s in steps]
    roles = [role_of(s) for s in steps]
    agents = [agent_name(s) for s in steps]
    counts: dict[str, int] = {}
    order: dict[str, int] = {}
    for a, r in zip(agents, roles, strict=True):
        counts[a] = counts.get(a, 0) + 1
        if r != "system":
            order.setdefault(a, len(order))
    names = {a for a, r in zip(agents, roles, strict=True) if r in {"actor", "user"}}
    first_actor = next((i for i, r in enumerate(roles) if r == "actor"), -1)
    final_steps = [i for i, t in enumerate(texts) if roles[i] != "tool" and FINAL_RE.search(t)]
    # where values first appear, and who reuses them
    first_seen: dict[str, int] = {}
    for i, t in enumerate(texts):
        for tok in _tokens(t):
            first_seen.setdefault(tok, i)
    task_tokens = _tokens(experience.task)
    answer_tokens = _tokens(experience.final_answer or "") - task_tokens
    reuse = np.zeros(n)
    later_by_other: dict[int, set[int]] = {}
    for i, t in enumerate(texts):
        for tok in _tokens(t):
            j = first_seen[tok]
            if j < i and agents[j] != agents[i] and tok not in task_tokens:
                later_by_other.setdefault(j, set()).add(i)
    for j, users in later_by_other.items():
        reuse[j] = len(users)
    truth = (experience.ground_truth or "").strip().lower()
    seen_numbers: list[list[float]] = []
    all_before: set[float] = set(_numbers(experience.task))
    for i, step in enumerate(steps):
        row = out[i]
        t = texts[i]
        a = agents[i]
        row[col["pos_log"]] = math.log1p(i) / math.log(64)
        row[col["from_end"]] = 1.0 - (i / (n - 1) if n > 1 else 0.0)
        row[col["n_log"]] = math.log1p(n) / math.log(128)
        row[col["first_actor"]] = i == first_actor
        row[col["first_of_agent"]] = agents.index(a) == i
        row[col["agent_share"]] = counts[a] / n
        row[col["agent_order"]] = min(order.get(a, 0), 6) / 6
        row[col["same_agent_prev"]] = i > 0 and agents[i - 1] == a
        target = addressee(step)
        if target is None and roles[i] in {"actor", "user"}:
            head = t[:300]
            target = next((b for b in names if b != a and len(b) > 2 and b in head), None)
        row[col["addresses"]] = target is not None
        row[col["next_is_addressee"]] = bool(target) and i + 1 < n and agents[i + 1] == target
        if i > 0:
            prev = steps[i - 1]
            row[col["after_error"]] = bool(prev.error) or bool(ERROR_RE.search(texts[i - 1][:400]))
        row[col["has_code"]] = "```" in t
        row[col["plan_like"]] = min(len(PLAN_RE.findall(t)), 4) / 4
        if answer_tokens:
            fresh = {tok for tok in _tokens(t) if tok in answer_tokens and first_seen[tok] == i}
            row[col["answer_origin2"]] = len(fresh) / len(answer_tokens)
        row[col["downstream"]] = min(reuse[i], 6) / 6
        nums = [x for x in _numbers(t) if abs(x) >= 2]
        if roles[i] != "tool" and nums:
            recent = [x for block in seen_numbers[-4:] for x in block]
            misses = 0
            for x in nums:
                if x in all_before:
                    continue
                if any(r != 0 and x != r and abs(x - r) <= 0.35 * abs(r) for r in recent):
                    misses += 1
            row[col["near_miss"]] = min(misses, 3) / 3
            row[col["unsupported"]] = min(sum(x not in all_before for x in nums), 3) / 3
        numbers_here = _numbers(t)
        seen_numbers.append(numbers_here)
        all_before.update(numbers_here)
        row[col["has_truth"]] = bool(truth) and len(truth) >= 2 and truth in t.lower()
    _consistency(experience, out, col, texts, roles, agents)
    _plan_progress(out, col, texts, roles, agents, final_steps)
    if text is not None:
        _delegation_fit(experience, out, col, text.steps, roles, agents)
        vec = text.steps
        before, after = neighbours(vec)
        out[:, col["sim_task"]] = _cos(vec, text.task[None, :])
        out[:, col["sim_answer"]] = _cos(vec, text.answer[None, :])
        out[:, col["sim_prev"]] = _cos(vec, before)
        out[:, col["sim_next"]] = _cos(vec, after)
        if n > 1:
            sims = vec @ vec.T
            norms = np.linalg.norm(vec, axis=1)
            sims = sims / np.maximum(np.outer(norms, norms), 1e-9)
            later = np.where(np.triu(np.ones((n, n), dtype=bool), 1), sims, -1.0)
            out[:, col["sim_later"]] = np.maximum(later.max(axis=1), 0.0)
    return out


def dense(
    experience: ExperienceCreate,
    *,
    text: StepText | None = None,
    references: Sequence[ExperienceCreate] = (),
    use_references: bool = True,
) -> np.ndarray:
    """The ``(steps, len(DENSE))`` hand-made and structural features."""
    hand = extract(experience, references=references, use_references=use_references)
    heuristic, _ = heuristic_score(hand, [role_of(s) for s in experience.steps])
    return np.hstack([hand, structure(experience, text), heuristic[:, None]])


Project = Callable[[np.ndarray], np.ndarray]


def text_blocks(text: StepText, project: Project) -> np.ndarray:
    """The projected embeddings of each step and its two neighbours, side by side."""
    vec = project(text.steps)
    prev, nxt = neighbours(vec)
    return np.hstack([vec, prev, nxt])


WORD_RE = re.compile(r"[A-Za-z][a-z]+")
CONTEXT_WORDS = 4


def _is_variant(new: str, seen: set[str]) -> bool:
    """``new`` looks like a mistaken copy of a seen token: a number with one or two digits
    changed (another year), or a name that overlaps a seen name without containing it."""
    if new[:1].isdigit() or new[:1] in "-#":
        digits = re.sub(r"\D", "", new)
        if len(digits) < 3:
            return False
        for other in seen:
            od = re.sub(r"\D", "", other)
            if len(od) == len(digits) and od != digits:
                same = sum(a == b for a, b in zip(od, digits, strict=True))
                if same >= len(digits) - 2:
                    return True
        return False
    words = set(new.split())
    for other in seen:
        if other[:1].isdigit():
            continue
        ow = set(other.split())
        common = ow & words
        if common and not ow <= words and not words <= ow and any(len(w) > 3 for w in common):
            return True
    return False


def _number_contexts(text: str) -> list[tuple[str, set[str]]]:
    """Each number in a text with the words just before it."""
    out = []
    for match in NUM_RE.finditer(text):
        head = text[max(0, match.start() - 80) : match.start()]
        words = {w.lower() for w in WORD_RE.findall(head)[-CONTEXT_WORDS:] if len(w) > 2}
        out.append((match.group(0).replace(",", ""), words))
    return out


def _consistency(
    experience: ExperienceCreate,
    out: np.ndarray,
    col: dict[str, int],
    texts: list[str],
    roles: list[str],
    agents: list[str],
) -> None:
    task_words = {w.lower() for w in WORD_RE.findall(experience.task) if len(w) > 2} - _STOP
    seen: set[str] = {t.lower() for t in TOKEN_RE.findall(experience.task)}
    task_numbers = {v for v, _ in _number_contexts(experience.task)}
    for i, t in enumerate(texts):
        tokens = {tok.strip(".,").lower() for tok in TOKEN_RE.findall(t) if len(tok) >= 2}
        if roles[i] in {"actor", "user"}:
            fresh = [tok for tok in tokens if tok not in seen]
            hits = sum(_is_variant(tok, seen) for tok in fresh[:30])
            out[i, col["variant"]] = min(hits, 2) / 2
            # a figure taken from a source where another figure matches the task's words better
            deficit = 0
            for value, _ in _number_contexts(t)[:12]:
                if value in task_numbers:
                    continue
                for j in range(i - 1, max(-1, i - 6), -1):
                    contexts = [
                        (v, w) for v, w in _number_contexts(texts[j]) if v not in task_numbers
                    ]
                    mine = [w for v, w in contexts if v == value]
                    if not mine:
                        continue
                    if len({v for v, _ in contexts}) >= 2:
                        fit = max(len(w & task_words) for _, w in contexts)
                        deficit = max(deficit, fit - len(mine[0] & task_words))
                    break
            out[i, col["worse_value"]] = min(deficit, 2) / 2
        seen |= tokens


_STOP = {
    "the", "and", "what", "was", "which", "how", "much", "did", "that", "with", "from", "answer",
    "give", "many", "had", "have", "this", "for", "its", "their", "there", "into", "than",
}  # fmt: skip


def _delegation_fit(
    experience: ExperienceCreate,
    out: np.ndarray,
    col: dict[str, int],
    vectors: np.ndarray,
    roles: list[str],
    agents: list[str],
) -> None:
    """Compare each instruction with the other instructions to the same addressee and to the
    others; and each reply with the agent's other messages."""
    steps = experience.steps
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, 1e-9)
    to: dict[int, str] = {}
    for i, step in enumerate(steps):
        target = addressee(step)
        if target is None and roles[i] == "actor" and i + 1 < len(steps):
            nxt = agents[i + 1]
            if nxt != agents[i] and nxt.lower() in step_text(step)[:300].lower():
                target = nxt
        if target:
            to[i] = target
    by_target: dict[str, list[int]] = {}
    for i, target in to.items():
        by_target.setdefault(target, []).append(i)
    if len(by_target) >= 2:
        for i, target in to.items():
            own = [j for j in by_target[target] if j != i]
            others = [j for b, js in by_target.items() if b != target for j in js]
            if not own or not others:
                continue
            fit_own = float(np.max(unit[own] @ unit[i]))
            fit_other = float(np.max(unit[others] @ unit[i]))
            out[i, col["odd_delegation"]] = max(0.0, fit_other - fit_own)
    by_agent: dict[str, list[int]] = {}
    for i, a in enumerate(agents):
        if roles[i] in {"actor", "user"}:
            by_agent.setdefault(a, []).append(i)
    for _, idx in by_agent.items():
        if len(idx) < 3:
            continue
        sims = unit[idx] @ unit[idx].T
        np.fill_diagonal(sims, -1.0)
        best = sims.max(axis=1)
        for k, i in enumerate(idx):
            out[i, col["odd_response"]] = max(0.0, 0.8 - float(best[k]))


def _plan_progress(
    out: np.ndarray,
    col: dict[str, int],
    texts: list[str],
    roles: list[str],
    agents: list[str],
    final_steps: list[int],
) -> None:
    """At each final answer: the share of the latest plan's items not yet worked on, counting
    one item per turn of another agent since the plan (the answer and a check item excluded)."""
    for i in final_steps:
        plan = next((j for j in range(i - 1, -1, -1) if len(PLAN_RE.findall(texts[j])) >= 2), None)
        if plan is None:
            continue
        items = len(PLAN_RE.findall(texts[plan]))
        turns, last = 0, agents[plan]
        for j in range(plan + 1, i):
            if roles[j] in {"actor", "user"} and agents[j] != agents[plan] and agents[j] != last:
                turns += 1
            if roles[j] in {"actor", "user"}:
                last = agents[j]
        out[i, col["plan_unfinished"]] = max(0, items - 2 - turns) / items
