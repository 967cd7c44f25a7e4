"""The LLM back end: any OpenAI-compatible chat endpoint (a tracer model served by vLLM, ...).

Three protocols (as in the failure-attribution literature):

* ``all_at_once``: the whole log in one prompt; the model names the agent and the step.
* ``step_by_step``: the log is shown up to step *i*; the model says whether step *i* is the
  decisive mistake; the first "yes" wins.
* ``binary_search``: the model is asked which half of the current range holds the decisive
  mistake, until one step is left.

Replies are JSON objects whose format each prompt states; :func:`parse_reply` also accepts code
fences, surrounding prose, single quotes and a bare ``step N`` as a last resort.
"""

from __future__ import annotations

import ast
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kb.errors import Invalid, KBError
from kb.models import Attribution, ExperienceCreate
from kb.trace.features import step_text

PROTOCOLS = ("all_at_once", "step_by_step", "binary_search")
SYSTEM = (
    "You are a failure-attribution expert. You read the log of a multi-step agent run that "
    "FAILED and find the decisive mistake: the earliest step that, had it been done right, would "
    "have led to success. Steps are numbered from 0. Reply with one JSON object only."
)


class LLMError(KBError):
    """The tracer's chat endpoint failed or gave a reply that could not be read."""


@dataclass(frozen=True)
class LLMConfig:
    """Where the tracer model lives."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0
    max_step_chars: int = 1500
    temperature: float = 0.0

    @classmethod
    def from_settings(cls, settings: Any) -> LLMConfig | None:
        """A config from :class:`kb.config.Settings`, or None when no base URL is set."""
        base = getattr(settings, "llm_base_url", None)
        if not base:
            return None
        model = getattr(settings, "llm_model", None)
        if not model:
            raise Invalid("KB_LLM_BASE_URL is set but KB_LLM_MODEL is not: name the tracer model")
        return cls(
            base_url=str(base),
            model=str(model),
            api_key=getattr(settings, "llm_api_key", None),
            timeout=float(getattr(settings, "llm_timeout", 60.0)),
        )


def parse_reply(text: str) -> dict[str, Any]:
    """The first JSON object in a reply (fenced, embedded in prose, or Python-literal quoted)."""
    body = re.sub(r"```(?:json)?", "", text or "")
    start = body.find("{")
    while start != -1:
        depth, quote, escaped = 0, "", False
        for end in range(start, len(body)):
            ch = body[end]
            if quote:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    candidate = body[start : end + 1]
                    parsed = _load(candidate)
                    if parsed is not None:
                        return parsed
                    break
        start = body.find("{", start + 1)
    match = re.search(r"step\D{0,20}(\d+)", body, re.IGNORECASE)
    if match:
        return {"mistake_step": int(match.group(1)), "reason": body.strip()[:500]}
    raise LLMError(f"the tracer model's reply holds no JSON object: {text[:200]!r}")


def _load(candidate: str) -> dict[str, Any] | None:
    trimmed = re.sub(r",\s*([}\]])", r"\1", candidate)
    pythonic = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", trimmed))
    pythonic = re.sub(r"\bnull\b", "None", pythonic)
    for attempt in (candidate, trimmed, pythonic):
        try:
            value = json.loads(attempt) if attempt is not pythonic else ast.literal_eval(attempt)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, dict):
            return value
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    match = re.search(r"-?\d+", str(value)) if value is not None else None
    return int(match.group()) if match else None


def _yes(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"yes", "true", "1", "y"}


Post = Callable[[str, dict[str, Any], dict[str, str], float], tuple[int, str]]
"""``post(url, json_body, headers, timeout) -> (status, body text)``."""


def urllib_post(
    url: str, body: dict[str, Any], headers: dict[str, str], timeout: float
) -> tuple[int, str]:
    """POST JSON with the standard library (no extra dependency)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode("utf-8", "replace")


class LLMTracer:
    """Attribution by a chat model, with the three protocols. ``post`` is injectable."""

    def __init__(self, config: LLMConfig, *, post: Post | None = None):
        if not config.base_url or not config.model:
            raise Invalid(
                "the LLM tracer needs a base URL and a model name (KB_LLM_BASE_URL, KB_LLM_MODEL)"
            )
        self.config = config
        self.post = post or urllib_post
        self.calls = 0

    # -- transport ----------------------------------------------------------------------------
    def chat(self, prompt: str) -> str:
        """One chat completion; raises :class:`LLMError` on transport or HTTP failure."""
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        payload = {
            "model": self.config.model,
            "temperature": self.config.temperature,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": prompt},
            ],
        }
        self.calls += 1
        try:
            status, text = self.post(url, payload, headers, self.config.timeout)
        except (urllib.error.URLError, OSError) as exc:
            raise LLMError(f"tracer endpoint {url} unreachable: {exc}") from exc
        if status >= 400:
            raise LLMError(f"tracer endpoint {url} answered {status}: {text[:200]}")
        try:
            return str(json.loads(text)["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"tracer endpoint {url} sent no chat completion: {text[:200]}") from exc

    def ask(self, prompt: str) -> dict[str, Any]:
        return parse_reply(self.chat(prompt))

    # -- prompts ------------------------------------------------------------------------------
    def render(self, experience: ExperienceCreate, upto: int | None = None, lo: int = 0) -> str:
        end = len(experience.steps) if upto is None else upto + 1
        lines = []
        for step in experience.steps[lo:end]:
            text = step_text(step)
            if len(text) > self.config.max_step_chars:
                text = text[: self.config.max_step_chars] + " ...[cut]"
            lines.append(f"[step {step.index}] {step.agent or step.role or 'unknown'}: {text}")
        return "\n".join(lines)

    def _header(self, experience: ExperienceCreate) -> str:
        parts = [f"TASK: {experience.task[:3000]}"]
        if experience.ground_truth:
            parts.append(f"CORRECT ANSWER: {experience.ground_truth[:1000]}")
        if experience.final_answer:
            parts.append(f"FINAL ANSWER GIVEN: {experience.final_answer[:1000]}")
        return "\n".join(parts)

    # -- protocols ----------------------------------------------------------------------------
    def all_at_once(self, experience: ExperienceCreate) -> Attribution:
        """One prompt with the whole log."""
        prompt = (
            f"{self._header(experience)}\n\nLOG:\n{self.render(experience)}\n\n"
            'Reply with JSON: {"mistake_agent": "<agent name>", "mistake_step": <step number>, '
            '"reason": "<one sentence>", "confidence": <0..1>}'
        )
        reply = self.ask(prompt)
        step = self._valid_step(experience, _int(reply.get("mistake_step", reply.get("step"))))
        confidence = _float(reply.get("confidence"), 0.5)
        return self._result(
            experience,
            step,
            str(reply.get("reason", "")),
            confidence,
            "llm:all_at_once",
            agent=reply.get("mistake_agent"),
        )

    def step_by_step(self, experience: ExperienceCreate) -> Attribution:
        """Ask about each acting step in turn; the first one judged decisive wins."""
        candidates = _candidates(experience)
        for i in candidates:
            prompt = (
                f"{self._header(experience)}\n\nLOG UP TO STEP {i}:\n{self.render(experience, i)}"
                f"\n\nIs step {i} the decisive mistake of this failed run? Reply with JSON: "
                '{"mistake": true|false, "reason": "<one sentence>"}'
            )
            reply = self.ask(prompt)
            if _yes(reply.get("mistake", reply.get("answer"))):
                return self._result(
                    experience, i, str(reply.get("reason", "")), 0.6, "llm:step_by_step"
                )
        last = candidates[-1] if candidates else None
        return self._result(
            experience,
            last,
            "no step was judged decisive; blaming the last one",
            0.1,
            "llm:step_by_step",
        )

    def binary_search(self, experience: ExperienceCreate) -> Attribution:
        """Halve the range of steps until one is left."""
        lo, hi = 0, len(experience.steps) - 1
        if hi < 0:
            return self._result(experience, None, "no steps", 0.0, "llm:binary_search")
        reasons = []
        while lo < hi:
            mid = (lo + hi) // 2
            prompt = (
                f"{self._header(experience)}\n\nLOG (steps {lo} to {hi}):\n"
                f"{self.render(experience, hi, lo)}\n\nIs the decisive mistake in steps {lo}-{mid} "
                f'(answer "first") or in steps {mid + 1}-{hi} (answer "second")? Reply with '
                'JSON: {"half": "first"|"second", "reason": "<one sentence>"}'
            )
            reply = self.ask(prompt)
            half = str(reply.get("half", reply.get("answer", ""))).strip().lower()
            reasons.append(str(reply.get("reason", "")))
            if half in {"first", "1", "upper", "lower_index", "a"}:
                hi = mid
            elif half in {"second", "2", "b"}:
                lo = mid + 1
            else:
                raise LLMError(f"binary search: expected half 'first' or 'second', got {half!r}")
        return self._result(
            experience, lo, reasons[-1] if reasons else "", 0.5, "llm:binary_search"
        )

    # -- helpers ------------------------------------------------------------------------------
    def _valid_step(self, experience: ExperienceCreate, step: int | None) -> int | None:
        if step is None or not 0 <= step < len(experience.steps):
            raise LLMError(
                f"the tracer model named step {step}, outside 0..{len(experience.steps) - 1}"
            )
        return step

    def _result(
        self,
        experience: ExperienceCreate,
        step: int | None,
        reason: str,
        confidence: float,
        method: str,
        *,
        agent: Any = None,
    ) -> Attribution:
        n = len(experience.steps)
        scores = [1.0 if i == step else 0.0 for i in range(n)]
        if step is not None and not agent:
            agent = experience.steps[step].agent or experience.steps[step].role
        return Attribution(
            agent=None if agent is None else str(agent),
            step=step,
            reason=reason or "named by the tracer model",
            confidence=max(0.0, min(1.0, confidence)),
            step_scores=scores,
            method=method,
            corrected=None,
        )


def _float(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _candidates(experience: ExperienceCreate) -> list[int]:
    from kb.trace.features import role_of

    out = [s.index for s in experience.steps if role_of(s) in {"actor", "user"}]
    return out or [s.index for s in experience.steps]


def attribute(
    experience: ExperienceCreate,
    config: LLMConfig | None,
    *,
    protocol: str = "all_at_once",
    post: Post | None = None,
) -> Attribution:
    """Attribute with a chat model; raises :class:`Invalid` when no endpoint is configured."""
    if config is None:
        raise Invalid("the llm tracer is not configured: set KB_LLM_BASE_URL and KB_LLM_MODEL")
    if protocol not in PROTOCOLS:
        raise Invalid(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    tracer = LLMTracer(config, post=post)
    result: Attribution = getattr(tracer, protocol)(experience)
    return result


__all__ = ["PROTOCOLS", "LLMConfig", "LLMError", "LLMTracer", "attribute", "parse_reply"]
