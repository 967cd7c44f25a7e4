"""Per-step features of a failed trajectory, shared by the heuristic and the learned back ends.

Every feature is read from the log itself (or from reference successes) and is meant to hold across
domains: nothing keys on the tool names of one benchmark. Values are roughly in ``[0, 1]``.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from kb.models import ExperienceCreate, Step

Embed = Callable[[list[str]], np.ndarray]

FEATURES: tuple[str, ...] = (
    "rel_pos",  # position in the log, 0 (first) .. 1 (last)
    "early",  # 1 - rel_pos squared: a mild prior for early root causes
    "is_actor",  # an agent acting (not system, tool output or the human/user side)
    "is_user",  # the user / human side of the conversation
    "is_tool",  # a tool's output or an error record
    "is_call",  # the step calls a tool
    "is_write_call",  # a call whose name does not read like a query (get/list/find/search/...)
    "error_here",  # error or exception markers in this step's own text
    "error_next",  # the tool result (or next message) answering this step reports an error
    "repeat_call",  # same tool and arguments as an earlier call (a loop)
    "repeat_text",  # near-copy of an earlier message by the same agent (a loop)
    "novel_args",  # share of argument values never seen earlier in the conversation
    "novel_values",  # numbers / ids in a message that appear nowhere earlier
    "drift",  # how far the step strays from the task text
    "ref_extra",  # a call whose tool the reference successes never use
    "ref_args_mismatch",  # a tool the references use, but with other arguments
    "ref_first_divergence",  # first call where the aligned tool sequences part
    "first_bad_call",  # the first state-changing call that departs from the references
    "before_bad_call",  # the last message from another party before that call (its trigger)
    "answer_origin",  # first step containing the wrong parts of the final answer
    "claim_mismatch",  # a message stating values of the ground truth's kind, but not it
    "correction_next",  # the next message from another party corrects or objects
    "refusal",  # gives up, refuses or hands off
    "last_actor",  # the last acting step
    "length",  # log-scaled text length
)

READ_VERBS = (
    "get", "list", "find", "search", "read", "fetch", "lookup", "look", "query", "show", "view",
    "describe", "check", "calculate", "compute", "think", "retrieve", "count", "browse", "open",
    "inspect", "visit", "select", "peek", "load", "download", "ask",
)  # fmt: skip
ERROR_RE = re.compile(
    r"\b(error|exception|traceback|failed|failure|invalid|not found|cannot be|unable to|"
    r"exit ?code:? ?[1-9]|errno|denied|timed? ?out|unknown (?:tool|function))\b",
    re.IGNORECASE,
)
CORRECTION_RE = re.compile(
    r"\b(actually|instead|that'?s (?:not|wrong|incorrect)|not what i|wrong|incorrect|mistake|"
    r"no,|wait|oops|you (?:missed|forgot)|i said|doesn'?t match|does not match|should have)\b",
    re.IGNORECASE,
)
REFUSAL_RE = re.compile(
    r"\b(i (?:can ?not|can't|am unable|'m unable|won't)|unfortunately|not (?:able|possible|"
    r"supported)|transfer(?:ring)? (?:you )?to|human agent|give up|no (?:solution|answer) found)\b",
    re.IGNORECASE,
)
VALUE_RE = re.compile(r"#?[A-Za-z_]*\d[\w#.\-/]*|\b[a-z]+(?:_[a-z0-9]+)+\b")
WORD_RE = re.compile(r"[a-z][a-z0-9']+")
STOP = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "this",
        "that",
        "you",
        "your",
        "i",
        "we",
        "our",
        "me",
        "my",
        "they",
        "them",
        "he",
        "she",
        "his",
        "her",
        "at",
        "by",
        "from",
        "as",
        "not",
        "no",
        "yes",
        "can",
        "could",
        "would",
        "should",
        "will",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "if",
        "then",
        "so",
        "but",
        "all",
        "any",
        "some",
        "what",
        "which",
        "who",
        "how",
        "when",
        "where",
        "there",
        "here",
        "please",
        "thank",
        "thanks",
        "also",
        "just",
        "like",
        "want",
        "need",
        "let",
        "know",
        "get",
    ]
)
ACTING_SKIP = {"system", "tool", "function", "observation", "error"}
USER_ROLES = {"user", "human"}


def step_text(step: Step) -> str:
    """The readable text of a step: its content, result, error, and any call it makes."""
    parts = [p for p in (step.content, step.result, step.error) if p and p != "None"]
    if step.tool and step.kind not in {"observation", "error"}:
        parts.append(f"{step.tool}({json.dumps(step.args or {}, sort_keys=True, default=str)})")
    return "\n".join(parts)


def calls_of(step: Step) -> list[tuple[str, dict[str, Any]]]:
    """The tool calls a step makes, as ``(tool, args)``; parallel calls are unpacked."""
    if not step.tool or step.kind in {"observation", "error"} or step.role in ACTING_SKIP:
        return []
    args = step.args or {}
    inner = args.get("calls")
    if isinstance(inner, list) and inner and all(isinstance(c, Mapping) for c in inner):
        return [(str(c.get("tool")), dict(c.get("args") or {})) for c in inner]
    return [(step.tool, dict(args))]


def role_of(step: Step) -> str:
    """``system``, ``tool``, ``user`` or ``actor``."""
    role = (step.role or "").lower()
    if role == "system":
        return "system"
    if role in {"tool", "function", "observation"} or step.kind in {"observation", "error"}:
        return "tool"
    if role in USER_ROLES:
        return "user"
    return "actor"


def is_write(tool: str) -> bool:
    """Whether a tool name reads like it changes state (no query verb at its start)."""
    head = re.split(r"[_\-.\s]|(?<=[a-z])(?=[A-Z])", tool.strip())[0].lower()
    return head not in READ_VERBS


def has_error(text: str | None) -> bool:
    """Error or exception markers in the first part of a text."""
    return bool(text) and bool(ERROR_RE.search((text or "")[:600]))


def values_in(text: str) -> set[str]:
    """Number- and id-like tokens (``#W123``, ``42``, ``user_name_12``), normalised."""
    out = set()
    for token in VALUE_RE.findall(text):
        token = token.strip(".,-/").lower()
        if len(token) >= 2 or token.isdigit():
            out.add(token.replace(",", ""))
    return out


def words_in(text: str) -> set[str]:
    return {w for w in WORD_RE.findall(text.lower()) if w not in STOP and len(w) > 2}


def flat_values(value: Any) -> list[str]:
    """The leaf values of an argument structure, as strings."""
    if isinstance(value, Mapping):
        return [v for item in value.values() for v in flat_values(item)]
    if isinstance(value, list | tuple):
        return [v for item in value for v in flat_values(item)]
    if value is None or isinstance(value, bool):
        return []
    return [str(value)]


def canon(tool: str, args: Mapping[str, Any]) -> str:
    return f"{tool}:{json.dumps(args, sort_keys=True, default=str)}"


def reference_actions(
    experience: ExperienceCreate, references: Iterable[ExperienceCreate]
) -> list[list[tuple[str, dict[str, Any]]]]:
    """Action sequences that succeeded: the task's gold actions, then each reference's calls."""
    sequences = []
    if experience.gold_actions:
        gold = [
            (str(a.get("name") or a.get("tool")), dict(a.get("kwargs") or a.get("args") or {}))
            for a in experience.gold_actions
            if isinstance(a, Mapping)
        ]
        if gold:
            sequences.append(gold)
    for ref in references:
        calls = [c for s in ref.steps for c in calls_of(s)]
        if calls:
            sequences.append(calls)
    return sequences


def _similarity(texts: list[str], task: str, embed: Embed | None) -> list[float]:
    if embed is not None and texts:
        vectors = np.asarray(embed([task[:2000], *[t[:2000] for t in texts]]), dtype=np.float64)
        norms = np.linalg.norm(vectors, axis=1)
        norms[norms == 0] = 1.0
        vectors = vectors / norms[:, None]
        return [float(x) for x in vectors[1:] @ vectors[0]]
    task_words = words_in(task)
    out = []
    for text in texts:
        words = words_in(text)
        out.append(len(words & task_words) / math.sqrt(len(words) * len(task_words) or 1))
    return out


def _answer_tokens(experience: ExperienceCreate) -> set[str]:
    """Parts of the final answer the ground truth does not contain (empty when unknown/right)."""
    truth, answer = experience.ground_truth, experience.final_answer
    if not truth or not answer:
        return set()
    truth_l = truth.lower()
    tokens = values_in(answer) | {w for w in words_in(answer) if len(w) > 3}
    wrong = {t for t in tokens if t not in truth_l}
    if not wrong or truth_l.strip() in answer.lower():
        return set()
    return wrong


def extract(
    experience: ExperienceCreate,
    *,
    references: Sequence[ExperienceCreate] = (),
    embed: Embed | None = None,
    use_references: bool = True,
) -> np.ndarray:
    """The ``(len(steps), len(FEATURES))`` feature matrix of an experience."""
    steps = experience.steps
    n = len(steps)
    out = np.zeros((n, len(FEATURES)), dtype=np.float64)
    if n == 0:
        return out
    col = {name: i for i, name in enumerate(FEATURES)}
    texts = [step_text(s) for s in steps]
    roles = [role_of(s) for s in steps]
    seen_values = values_in(experience.task)
    seen_calls: set[str] = set()
    seen_msgs: dict[str, list[set[str]]] = {}
    refs = reference_actions(experience, references) if use_references else []
    ref_tools = {t for seq in refs for t, _ in seq}
    ref_canon = {canon(t, a) for seq in refs for t, a in seq}
    first_div = _first_divergence(steps, refs)
    wrong_answer = _answer_tokens(experience)
    answer_seen: set[str] = set()
    truth = (experience.ground_truth or "").strip().lower()
    truth_values = values_in(truth)
    truth_shape = _shape(next(iter(truth_values))) if len(truth_values) == 1 else ""
    claimed = False
    sims = _similarity(texts, experience.task, embed)
    last_actor = max((i for i, r in enumerate(roles) if r == "actor"), default=-1)

    for i, step in enumerate(steps):
        row = out[i]
        text = texts[i]
        lower = text.lower()
        role = roles[i]
        row[col["rel_pos"]] = i / (n - 1) if n > 1 else 0.0
        row[col["early"]] = 1.0 - row[col["rel_pos"]] ** 2
        row[col["is_actor"]] = role == "actor"
        row[col["is_user"]] = role == "user"
        row[col["is_tool"]] = role == "tool"
        row[col["length"]] = min(1.0, math.log1p(len(text)) / 10)
        row[col["last_actor"]] = i == last_actor
        calls = calls_of(step)
        row[col["is_call"]] = bool(calls)
        row[col["is_write_call"]] = any(is_write(t) for t, _ in calls)
        row[col["error_here"]] = bool(step.error) or has_error(
            step.result if role == "tool" else step.content
        )
        nxt = steps[i + 1] if i + 1 < n else None
        if nxt is not None and role != "tool":
            row[col["error_next"]] = bool(nxt.error) or (
                roles[i + 1] == "tool" and has_error(nxt.result or nxt.content)
            )
        if role in {"actor", "user"} and nxt is not None:
            later = next((j for j in range(i + 1, n) if roles[j] in {"actor", "user"}), None)
            if later is not None and roles[later] != role:
                row[col["correction_next"]] = bool(CORRECTION_RE.search(texts[later][:400]))
        if role == "actor":
            row[col["refusal"]] = bool(REFUSAL_RE.search(lower[:1500])) or any(
                "transfer" in t.lower() or "human" in t.lower() for t, _ in calls
            )
            row[col["drift"]] = max(0.0, 1.0 - sims[i])
        # loops
        keys = [canon(t, a) for t, a in calls]
        repeats = sum(k in seen_calls for k in keys)
        row[col["repeat_call"]] = min(1.0, repeats / max(1, len(keys)))
        seen_calls.update(keys)
        agent = step.agent or step.role or ""
        words = words_in(step.content or "")
        if role != "tool" and len(words) >= 4:
            previous = seen_msgs.setdefault(agent, [])
            best = max((len(words & p) / len(words | p) for p in previous), default=0.0)
            row[col["repeat_text"]] = best if best >= 0.6 else 0.0
            previous.append(words)
        # hallucinated values
        arg_values = [values_in(v) for _, a in calls for v in flat_values(a)]
        arg_values = [v for v in arg_values if v]
        if arg_values:
            row[col["novel_args"]] = sum(not v <= seen_values for v in arg_values) / len(arg_values)
        if role == "actor" and step.content:
            found = values_in(step.content)
            novel = [v for v in found if v not in seen_values]
            row[col["novel_values"]] = min(1.0, len(novel) / 3)
            if (
                truth_shape
                and not claimed
                and truth not in lower
                and any(_shape(v) == truth_shape and _near(v, truth) for v in novel)
            ):
                row[col["claim_mismatch"]] = 1.0  # only the first such claim: its origin
                claimed = True
        # divergence from references
        if refs and calls:
            row[col["ref_extra"]] = any(t not in ref_tools for t, _ in calls)
            row[col["ref_args_mismatch"]] = any(
                t in ref_tools and canon(t, a) not in ref_canon for t, a in calls
            )
            row[col["ref_first_divergence"]] = i == first_div
        # origin of the wrong answer
        if wrong_answer and role != "system":
            fresh = {t for t in wrong_answer - answer_seen if t in lower}
            if fresh:
                row[col["answer_origin"]] = len(fresh) / len(wrong_answer)
                answer_seen |= fresh
        seen_values |= values_in(text)
    bad = _first_bad_call(out, col)
    if bad >= 0:
        out[bad, col["first_bad_call"]] = 1.0
        trigger = next(
            (
                j
                for j in range(bad - 1, -1, -1)
                if roles[j] in {"user", "actor"}
                and (steps[j].agent or roles[j]) != (steps[bad].agent or roles[bad])
                and steps[j].content
            ),
            None,
        )
        if trigger is not None:
            out[trigger, col["before_bad_call"]] = 1.0
    return out


def _near(value: str, truth: str) -> bool:
    """A misstatement of the truth rather than another figure: within half of it, or the same
    digits but one or two."""
    a, b = re.sub(r"[^\d.]", "", value), re.sub(r"[^\d.]", "", truth)
    if not a or not b:
        return False
    if len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) <= 2:
        return True
    try:
        x, y = float(a.strip(".")), float(b.strip("."))
    except ValueError:
        return False
    return y != 0 and abs(x - y) <= 0.5 * abs(y)


def _shape(value: str) -> str:
    """The shape of a value (``12.50`` -> ``9.99``), to compare a claim with the ground truth."""
    return re.sub(r"[a-z]+", "a", re.sub(r"\d", "9", value.strip("$%")))


def _first_bad_call(out: np.ndarray, col: Mapping[str, int]) -> int:
    departs = (out[:, col["ref_extra"]] + out[:, col["ref_args_mismatch"]]) > 0
    writes = departs & (out[:, col["is_write_call"]] > 0)
    for mask in (writes, departs):
        hits = np.flatnonzero(mask)
        if hits.size:
            return int(hits[0])
    return -1


def _first_divergence(steps: Sequence[Step], refs: Sequence[Sequence[tuple[str, Any]]]) -> int:
    """The index of the first call whose (tool, args) departs from the best-aligned reference."""
    call_steps = [(i, c) for i, s in enumerate(steps) for c in calls_of(s)]
    if not refs or not call_steps:
        return -1
    ours = [canon(t, a) for _, (t, a) in call_steps]
    best: int | None = None
    best_ratio = -1.0
    for seq in refs:
        theirs = [canon(t, a) for t, a in seq]
        matcher = difflib.SequenceMatcher(a=ours, b=theirs, autojunk=False)
        ratio = matcher.ratio()
        position = len(ours)
        for tag, i1, _i2, _j1, _j2 in matcher.get_opcodes():
            if tag != "equal":
                position = i1
                break
        if ratio > best_ratio:
            best_ratio, best = ratio, position
    if best is None or best >= len(call_steps):
        return -1
    return call_steps[best][0]


def matrix_for(
    experiences: Iterable[ExperienceCreate],
    *,
    references: Callable[[ExperienceCreate], Sequence[ExperienceCreate]] | None = None,
    embed: Embed | None = None,
) -> list[np.ndarray]:
    """Feature matrices for many experiences (``references`` picks each one's successes)."""
    return [
        extract(e, references=references(e) if references else (), embed=embed) for e in experiences
    ]
