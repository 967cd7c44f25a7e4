"""Distillation by a chat model: any OpenAI-compatible endpoint (``KB_LLM_BASE_URL``).

The model gets the task, the outcome, the log (each step clipped), the traced cause and the aligned
repair when there is one, and the offline distillation as a draft; it answers one JSON object with
the strategy tier (goal, decision points with their argument bindings, checks) and the execution
tier (plan, lessons). The reply is validated against a schema (:class:`Reply`); a reply that does
not validate, or that names a tool the run never called, is sent back with the error, up to
``retries`` times. Transport errors and 429/5xx answers are retried with backoff. Answers are cached
by a hash of the model and the prompt, so the same content is never asked twice.

The transport and the endpoint settings are the tracer's (:mod:`kb.trace.llm`): one client.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kb.distill import DecisionPoint, Distillation, calls_of, clip, failing_step
from kb.models import ExperienceCreate
from kb.trace.llm import LLMConfig, LLMError, Post, parse_reply, urllib_post

SYSTEM = (
    "You distill the log of an agent run into knowledge for the next agent that meets a similar "
    "task. Two tiers: the STRATEGY (how to approach this kind of task: the goal, the ordered "
    "decision points, each a tool call with where its arguments came from, and the checks made "
    "before state-changing calls) and the EXECUTION (the step skeleton, and lessons: what failed, "
    "why, and what to do instead). Use only tools that appear in the log. Reply with one JSON "
    "object only."
)
SHAPE = (
    '{"strategy": {"goal": "<one sentence>", "decision_points": [{"tool": "<tool name from the '
    'log>", "bindings": {"<argument>": "<where its value came from: user | <earlier tool> | '
    'chosen>"}, "note": "<optional>"}], "checks": ["<what was verified before a state-changing '
    'call>"]}, "plan": ["<step>"], "lessons": ["<for a failure: the failing step, its error and '
    'cause; for a repaired failure: instead of X, do Y>"]}'
)
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class PointReply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tool: str = Field(min_length=1, max_length=200)
    bindings: dict[str, str] = Field(default_factory=dict)
    note: str = Field("", max_length=400)


class StrategyReply(BaseModel):
    model_config = ConfigDict(extra="ignore")

    goal: str = Field(min_length=1, max_length=1000)
    decision_points: list[PointReply] = Field(default_factory=list, max_length=100)
    checks: list[str] = Field(default_factory=list, max_length=50)


class Reply(BaseModel):
    """The JSON a distilling model must answer."""

    model_config = ConfigDict(extra="ignore")

    strategy: StrategyReply
    plan: list[str] = Field(default_factory=list, max_length=100)
    lessons: list[str] = Field(default_factory=list, max_length=50)


def render_prompt(
    experience: ExperienceCreate,
    draft: Distillation,
    repairs: Sequence[ExperienceCreate] = (),
    *,
    max_step_chars: int = 600,
    max_steps: int = 80,
) -> str:
    """The user prompt: task, outcome, trace, the log, the repair's calls and the draft."""
    lines = [f"TASK: {experience.task[:3000]}", f"OUTCOME: {experience.outcome.value}"]
    mark = experience.attribution or getattr(experience, "tracer_attribution", None)
    index = failing_step(experience) if experience.outcome.value != "success" else None
    if index is not None:
        lines.append(f"FAILING STEP: {index}")
    if mark is not None and mark.reason:
        lines.append(f"TRACED CAUSE ({mark.method}): {clip(mark.reason, 500)}")
    steps = [s for s in experience.steps if (s.role or "") != "system"]
    if len(steps) > max_steps:
        steps = steps[: max_steps // 2] + steps[-max_steps // 2 :]
    lines.append("LOG:")
    for step in steps:
        who = step.agent or step.role or "agent"
        if step.tool and step.kind not in {"observation", "error"} and step.role != "tool":
            body = f"CALL {step.tool}({json.dumps(step.args or {}, default=str)})"
        else:
            body = step.error or step.result or step.content or ""
        lines.append(f"[step {step.index}] {who}: {clip(body, max_step_chars)}")
    for repair in repairs[:1]:
        calls = [c.short(200) for c in calls_of(repair.steps)][:30]
        lines.append("A SUCCESSFUL RUN OF THE SAME TASK CALLED: " + " ; ".join(calls))
    lines.append("DRAFT (rule-based, improve it): " + draft.strategy_text())
    if draft.lessons:
        lines.append("DRAFT LESSONS: " + " ; ".join(draft.lessons))
    lines.append(f"Reply with JSON: {SHAPE}")
    return "\n".join(lines)


Sleep = Callable[[float], None]


class LLMDistiller:
    """Distillation by a chat model (``post`` and ``sleep`` are injectable for tests)."""

    def __init__(
        self,
        config: LLMConfig,
        *,
        post: Post | None = None,
        retries: int = 2,
        cache_dir: Path | None = None,
        sleep: Sleep = time.sleep,
        json_mode: bool = True,
    ):
        if not config.base_url or not config.model:
            raise LLMError("LLM distillation needs KB_LLM_BASE_URL and KB_LLM_MODEL")
        self.config = config
        self.post = post or urllib_post
        self.retries = max(0, retries)
        self.cache_dir = cache_dir
        self.sleep = sleep
        self.json_mode = json_mode
        self.calls = 0
        self.cache_hits = 0

    @property
    def method(self) -> str:
        return f"llm:{self.config.model}"

    # -- transport ------------------------------------------------------------------------------
    def chat(self, messages: list[dict[str, str]]) -> str:
        """One chat completion, retried on transport errors and 429/5xx answers."""
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        payload: dict[str, Any] = {
            "model": self.config.model,
            "temperature": self.config.temperature,
            "messages": messages,
        }
        if self.json_mode:
            payload["response_format"] = {"type": "json_object"}
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(min(8.0, 0.5 * 2**attempt))
            self.calls += 1
            try:
                status, text = self.post(url, payload, headers, self.config.timeout)
            except (urllib.error.URLError, OSError) as exc:
                problem = f"unreachable: {exc}"
                continue
            if status in RETRY_STATUS:
                problem = f"answered {status}: {text[:200]}"
                continue
            if status >= 400:
                raise LLMError(f"distillation endpoint {url} answered {status}: {text[:200]}")
            try:
                return str(json.loads(text)["choices"][0]["message"]["content"] or "")
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise LLMError(
                    f"distillation endpoint {url} sent no chat completion: {text[:200]}"
                ) from exc
        raise LLMError(f"distillation endpoint {url} {problem} (after {self.retries + 1} tries)")

    # -- distillation ---------------------------------------------------------------------------
    def distill(
        self,
        experience: ExperienceCreate,
        draft: Distillation,
        repairs: Sequence[ExperienceCreate] = (),
    ) -> Distillation:
        """The model's distillation of ``experience`` (``draft``: the offline one, as a hint).

        Raises:
            LLMError: the endpoint failed, or no valid reply came after the retries.
        """
        prompt = render_prompt(
            experience, draft, repairs, max_step_chars=self.config.max_step_chars
        )
        key = hashlib.sha256(json.dumps([self.config.model, SYSTEM, prompt]).encode()).hexdigest()
        cached = self._cached(key)
        if cached is not None:
            self.cache_hits += 1
            return self._distillation(cached)
        tools = {c.tool for c in calls_of(experience.steps)}
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        problem = ""
        for _ in range(self.retries + 1):
            text = self.chat(messages)
            try:
                reply = Reply.model_validate(parse_reply(text))
                unknown = [
                    p.tool for p in reply.strategy.decision_points if tools and p.tool not in tools
                ]
                if unknown:
                    raise LLMError(f"decision points name tools the run never called: {unknown}")
            except (LLMError, ValidationError) as exc:
                problem = str(exc).splitlines()[0][:300]
                messages += [
                    {"role": "assistant", "content": text[:4000]},
                    {
                        "role": "user",
                        "content": f"That reply is not valid ({problem}). Reply again with one "
                        f"JSON object of this shape: {SHAPE}",
                    },
                ]
                continue
            self._store(key, reply)
            return self._distillation(reply)
        raise LLMError(f"no valid distillation after {self.retries + 1} replies: {problem}")

    def _distillation(self, reply: Reply) -> Distillation:
        return Distillation(
            goal=reply.strategy.goal,
            points=[
                DecisionPoint(tool=p.tool, bindings=p.bindings, note=p.note)
                for p in reply.strategy.decision_points
            ],
            checks=[clip(c, 300) for c in reply.strategy.checks],
            plan=[clip(p, 300) for p in reply.plan],
            lessons=[clip(x, 600) for x in reply.lessons],
            method=self.method,
        )

    # -- cache ----------------------------------------------------------------------------------
    def _cached(self, key: str) -> Reply | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / f"{key}.json"
        if not path.is_file():
            return None
        try:
            return Reply.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError):
            return None  # a damaged entry is asked again and overwritten

    def _store(self, key: str, reply: Reply) -> None:
        if self.cache_dir is None:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self.cache_dir / f"{key}.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(reply.model_dump_json(), encoding="utf-8")
        os.replace(tmp, path)


__all__ = ["SYSTEM", "LLMDistiller", "Reply", "render_prompt"]
