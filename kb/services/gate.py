"""The pre-execution gate of one namespace: allow, warn or deny an agent's tool call before it runs.

A session is one agent run, named by the caller's ``run_id`` (the id ``record_experience`` takes),
stored in SQL, bound to the namespace and expiring ``KB_GATE_SESSION_DAYS`` after its last check.

Per action (spatial), each signal a risk in [0, 1], combined by noisy-OR:

* role profile: the tools and argument values of the stored successful runs of the role (or
  domain), cached per namespace and role; a call to a tool the role never used;
* schema: arguments against the tool's JSON Schema where the policy (or a skill) has one;
* provenance: identifier-like argument values (destinations, ids, names, passwords) that appear
  nowhere in the session: not in the task, not in a tool result, not in an earlier call;
* pitfalls: stored failures of the same tool with similar arguments, with their error;
* content (TraceSafe): instructions embedded in tool results (cue phrases, imperatives naming an
  identifier) that the next call follows (it uses a value from them, or its meaning is closer to
  them than to the task), and secrets or personal data in an outbound call;
* writes the task did not ask for; privileged and destructive writes; the policy's deny list.

Per session (temporal, Session Risk Memory): an exponential moving average of the baseline-
subtracted per-action risk and the drift of a semantic centroid of the session's actions away from
its anchor (the role's stored runs, else the task), so that a slow drift crosses the session
threshold although no single action crosses the action threshold.

One embedding per check (the action; the task and injected passages once each, in the same call).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from kb import safety
from kb.errors import Invalid, ModelMismatch, NotFound
from kb.models import MAX_STEP_TEXT, GateDecisionRow, GateSessionRow, Outcome, utcnow
from kb.services import Service, coerce
from kb.services.experiences import Experiences
from kb.srm import SessionMemory
from kb.store import Store
from kb.stores.sessions import SessionStore

Decision = Literal["allow", "warn", "deny"]
ORDER: dict[str, int] = {"allow": 0, "warn": 1, "deny": 2}
PROFILE_TTL = 60.0
POLICY_TTL = 5.0


class GateAction(BaseModel):
    """A tool call an agent is about to make, and the tool results it received since its previous
    check (data, never instructions)."""

    model_config = ConfigDict(extra="forbid")

    tool: str = Field(min_length=1, max_length=200)
    args: dict[str, Any] = Field(default_factory=dict)
    results: list[str] = Field(default_factory=list, max_length=100)
    content: str | None = Field(None, max_length=20_000, description="the agent's stated intent")


class GateReason(BaseModel):
    """One signal that raised the risk: its name, what it saw, and how much it weighed."""

    signal: str
    detail: str
    weight: float


class GateDecision(BaseModel):
    """The gate's answer for one action."""

    run_id: str
    seq: int
    decision: Decision
    risk: float = Field(description="per-action risk (0-1)")
    session_risk: float = Field(description="session risk memory (0-1)")
    action_decision: Decision = Field(description="what the per-action gate alone decides")
    reasons: list[GateReason] = Field(default_factory=list)
    evidence: list[str] = Field(default_factory=list, description="record ids behind the reasons")
    signals: dict[str, float] = Field(
        default_factory=dict, description="the per-action signals that fired, by weight"
    )
    session_signals: dict[str, float] = Field(
        default_factory=dict,
        description="the session memory's parts: ema, drift, outflow, escalation",
    )
    elapsed_ms: float = 0.0


class RoleRules(BaseModel):
    """What a policy says about one role: tools it may use (none: learned from stored runs) and
    tools it must never use."""

    model_config = ConfigDict(extra="forbid")

    tools: list[str] = Field(default_factory=list)
    deny_tools: list[str] = Field(default_factory=list)


class GatePolicy(BaseModel):
    """The gate policy of a namespace (changed only through the CLI or the SDK)."""

    model_config = ConfigDict(extra="forbid")

    warn: float = Field(0.45, ge=0, le=1, description="per-action risk that warns")
    deny: float = Field(0.8, ge=0, le=1, description="per-action risk that denies")
    session_warn: float = Field(0.25, ge=0, le=1)
    session_deny: float = Field(0.4, ge=0, le=1)
    baseline: float = Field(0.1, ge=0, le=1, description="risk subtracted before accumulating")
    decay: float = Field(0.6, ge=0, lt=1, description="weight of the past in the moving average")
    drift_weight: float = Field(0.6, ge=0, le=5, description="weight of the centroid's drift")
    outflow_weight: float = Field(
        0.05, ge=0, le=1, description="session risk per identifier from tool results sent out"
    )
    escalation_weight: float = Field(
        0.12, ge=0, le=1, description="session risk per step up the privilege ladder"
    )
    session_memory: bool = Field(True, description="False: the per-action gate alone")
    deny_tools: list[str] = Field(default_factory=list)
    read_only_tools: list[str] = Field(default_factory=list)
    write_tools: list[str] = Field(default_factory=list)
    tool_schemas: dict[str, dict[str, Any]] = Field(default_factory=dict)
    roles: dict[str, RoleRules] = Field(default_factory=dict)


class GateStep(BaseModel):
    """A decision as a session review shows it."""

    seq: int
    tool: str
    args: dict[str, Any]
    decision: Decision
    risk: float
    session_risk: float
    reasons: list[GateReason]
    evidence: list[str]
    at: datetime


class GateSession(BaseModel):
    """A gated run: its role, task, risk memory and every decision."""

    run_id: str
    namespace: str
    role: str | None
    task: str | None
    checks: int
    session_risk: float
    peak_risk: float
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    steps: list[GateStep]
    experience_id: str | None = None
    """The experience recorded under the same run id (``record_experience(run_id=...)``)."""


@dataclass
class Profile:
    """What the stored successful runs of a role did, and the failures of the namespace."""

    runs: int = 0
    tools: Counter[str] = field(default_factory=Counter)
    evidence: dict[str, list[str]] = field(default_factory=dict)
    arg_keys: dict[str, set[str]] = field(default_factory=dict)
    values: dict[str, set[str]] = field(default_factory=dict)
    pitfalls: dict[str, list[tuple[dict[str, Any], str, str]]] = field(default_factory=dict)
    anchor: np.ndarray | None = None
    """The centroid of the role's stored actions (the session's anchor)."""
    actions: list[str] = field(default_factory=list)
    action_vecs: np.ndarray | None = None


class Gate(Service):
    """The pre-execution gate of one namespace (sessions, policy, role profiles)."""

    def __init__(self, store: Store, namespace: str, experiences: Experiences):
        super().__init__(store, namespace)
        self.experiences = experiences
        self.sessions = SessionStore(store.sql, namespace)
        self._profiles: dict[str | None, tuple[float, int, Profile]] = {}
        self._policy: tuple[float, GatePolicy] | None = None
        self._rows: dict[str, GateSessionRow] = {}

    # -- policy ---------------------------------------------------------------------------------
    def policy(self) -> GatePolicy:
        """The namespace's policy (defaults until one is set)."""
        now = time.monotonic()
        if self._policy is None or now - self._policy[0] > POLICY_TTL:
            stored = self.sessions.policy()
            self._policy = (now, GatePolicy.model_validate(stored or {}))
        return self._policy[1]

    def set_policy(
        self, changes: GatePolicy | Mapping[str, Any], *, replace: bool = False
    ) -> GatePolicy:
        """Change the namespace's policy: the given fields (all of them with ``replace``)."""
        if isinstance(changes, GatePolicy):
            changes = changes.model_dump(exclude_unset=not replace)
        base = {} if replace else self.policy().model_dump()
        policy = coerce(GatePolicy, {**base, **dict(changes)}, "gate policy")
        if policy.deny < policy.warn or policy.session_deny < policy.session_warn:
            raise Invalid("gate policy: a deny threshold must not be below its warn threshold")
        with self.store.transaction() as session:
            self.sessions.set_policy(session, policy.model_dump(mode="json"))
        self._policy = (time.monotonic(), policy)
        self._profiles.clear()
        return policy

    # -- sessions -------------------------------------------------------------------------------
    def session(self, run_id: str) -> GateSession:
        """A live session and its decisions, for review."""
        row = self.sessions.get(run_id)
        if row is None:
            raise NotFound(
                f"no gate session {run_id!r} in namespace {self.namespace!r} (never checked, or "
                "expired)"
            )
        steps = [
            GateStep(
                seq=d.seq,
                tool=d.tool,
                args=d.data.get("args", {}),
                decision=d.decision,  # type: ignore[arg-type]
                risk=d.risk,
                session_risk=d.session_risk,
                reasons=[GateReason.model_validate(r) for r in d.data.get("reasons", [])],
                evidence=list(d.data.get("evidence", [])),
                at=d.created_at,
            )
            for d in self.sessions.decisions(run_id)
        ]
        return self._summary(row, steps, experience_id=self.experiences.by_run_id(run_id))

    def recent(self, limit: int = 20) -> list[GateSession]:
        """Live sessions, most recently checked first (without their steps)."""
        return [self._summary(r) for r in self.sessions.recent(max(1, min(limit, 1000)))]

    def _summary(
        self,
        row: GateSessionRow,
        steps: list[GateStep] | None = None,
        *,
        experience_id: str | None = None,
    ) -> GateSession:
        return GateSession(
            run_id=row.run_id,
            namespace=self.namespace,
            role=row.role,
            task=row.task,
            checks=row.seq,
            session_risk=float(row.state.get("session_risk", 0.0)),
            peak_risk=float(row.state.get("peak", 0.0)),
            created_at=row.created_at,
            updated_at=row.updated_at,
            expires_at=row.expires_at,
            steps=steps or [],
            experience_id=experience_id,
        )

    # -- checking -------------------------------------------------------------------------------
    def check(
        self,
        run_id: str,
        action: GateAction | Mapping[str, Any],
        *,
        role: str | None = None,
        task: str | None = None,
        schema: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> GateDecision:
        """Decide on one action of a run before it executes, and remember it in the session.

        Args:
            run_id: the run (session) this action belongs to; the first check opens it.
            action: the tool call (``tool``, ``args``) and the tool ``results`` received since the
                previous check.
            role: the agent's role or domain (its profile comes from stored successful runs).
            task: the user's task (trusted); given once is enough.
            schema: the tool's JSON Schema of arguments when the caller knows it (a skill's).
        """
        started = time.perf_counter()
        if not 1 <= len(run_id) <= 200:
            raise Invalid("run_id must be 1 to 200 characters")
        act: GateAction = coerce(GateAction, action, "action")
        for text in act.results:
            if len(text) > MAX_STEP_TEXT:
                raise Invalid(f"a tool result is longer than {MAX_STEP_TEXT} characters")
        policy = self.policy()
        now = now or utcnow()
        for _ in range(5):
            row = self._load(run_id, now)
            fresh = row is None
            state = SessionMemory.of(row, role=role, task=task)
            decision, new_state = self._decide(run_id, act, state, policy, schema)
            decision.elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
            saved = self._save(run_id, act, decision, new_state, row, fresh, now)
            if saved is not None:
                self._rows[run_id] = saved
                return decision
            self._rows.pop(run_id, None)
        raise Invalid(f"gate session {run_id!r} is being checked by too many writers at once")

    def _load(self, run_id: str, now: datetime) -> GateSessionRow | None:
        cached = self._rows.get(run_id)
        if cached is not None and self.sessions.version(run_id) == cached.seq:
            expires = cached.expires_at
            if (expires if expires.tzinfo else expires.replace(tzinfo=now.tzinfo)) > now:
                return cached
        row = self.sessions.get(run_id, now=now)
        if row is None:
            self._rows.pop(run_id, None)
        return row

    def _save(
        self,
        run_id: str,
        act: GateAction,
        decision: GateDecision,
        state: SessionMemory,
        previous: GateSessionRow | None,
        fresh: bool,
        now: datetime,
    ) -> GateSessionRow | None:
        ttl = timedelta(days=self.store.settings.gate_session_days)
        row = GateSessionRow(
            namespace=self.namespace,
            run_id=run_id,
            role=state.role,
            task=state.task,
            seq=decision.seq,
            state=state.dump(),
            corpus=state.corpus,
            created_at=previous.created_at if previous is not None else now,
            updated_at=now,
            expires_at=now + ttl,
        )
        log = GateDecisionRow(
            namespace=self.namespace,
            run_id=run_id,
            seq=decision.seq,
            tool=act.tool,
            decision=decision.decision,
            risk=decision.risk,
            session_risk=decision.session_risk,
            data={
                "args": act.args,
                "reasons": [r.model_dump() for r in decision.reasons],
                "evidence": decision.evidence,
                "signals": decision.signals,
                "session_signals": decision.session_signals,
                "action_decision": decision.action_decision,
            },
            created_at=now,
        )
        with self.store.transaction() as session:
            if fresh:
                self.sessions.expire(session, now=now)
            ok = self.sessions.save(
                session, row, log, previous_seq=previous.seq if previous is not None else None
            )
        return row if ok else None

    def _decide(
        self,
        run_id: str,
        act: GateAction,
        state: SessionMemory,
        policy: GatePolicy,
        schema: Mapping[str, Any] | None,
    ) -> tuple[GateDecision, SessionMemory]:
        reasons: list[GateReason] = []
        evidence: list[str] = []
        signals: dict[str, float] = {}

        def add(signal: str, weight: float, detail: str) -> None:
            weight = round(min(1.0, max(0.0, weight)), 4)
            if weight <= 0:
                return
            signals[signal] = max(signals.get(signal, 0.0), weight)
            reasons.append(GateReason(signal=signal, detail=detail[:300], weight=weight))

        had_context = bool(state.task or state.corpus)
        for position, text in enumerate(act.results):
            state.observe(text, f"result {position + 1} before check {state.seq + 1}")
        kind = safety.tool_kind(
            act.tool, read_only=policy.read_only_tools, writes=policy.write_tools
        )
        write = not kind.read_only
        profile = self.profile(state.role)
        rules = policy.roles.get(state.role or "", RoleRules())
        vectors = self._embed(act, state, reasons)

        # -- the policy ---------------------------------------------------------------------
        if act.tool in set(policy.deny_tools) | set(rules.deny_tools):
            add("deny_list", 1.0, f"{act.tool} is on the namespace's deny list")
        if rules.tools and act.tool not in rules.tools:
            add(
                "role",
                0.5 if write else 0.2,
                f"{act.tool} is not among the tools of role {state.role}",
            )
        tool_schema = schema or policy.tool_schemas.get(act.tool)
        if tool_schema:
            problems = _schema_errors(tool_schema, act.args)
            if problems:
                add("schema", 0.3, f"arguments break the tool's schema: {problems}")

        # -- role profile and pitfalls --------------------------------------------------------
        if profile.runs >= 3 and not rules.tools:
            if act.tool not in profile.tools:
                add(
                    "profile",
                    0.4 if write else 0.15,
                    f"no stored successful run of role {state.role or '(any)'} used {act.tool}",
                )
            else:
                evidence += profile.evidence.get(act.tool, [])[:3]
                unknown = set(act.args) - profile.arg_keys.get(act.tool, set())
                if unknown:
                    add(
                        "profile_args",
                        0.15,
                        f"arguments never used with {act.tool}: {sorted(unknown)}",
                    )
        if vectors is not None and profile.action_vecs is not None and profile.runs >= 3:
            nearest = float(np.max(profile.action_vecs @ vectors[0]))
            far = max(0.0, 0.55 - nearest)
            if far > 0:
                add(
                    "role_semantics",
                    min(0.3, far * (1.5 if write else 0.5)),
                    f"the call is unlike the role's stored calls (nearest cosine {nearest:.2f})",
                )
        for args, error, exp_id in profile.pitfalls.get(act.tool, [])[:50]:
            if _similar_args(args, act.args):
                add("pitfall", 0.25, f"{act.tool} with similar arguments failed before: {error}")
                evidence.append(exp_id)
                break

        # -- provenance and injected instructions -------------------------------------------
        outbound = kind.outbound
        task_norm = safety.norm(state.task or "")
        injected_hits: list[str] = []
        benign_values: list[bool] = []  # per value: from the task, or seen outside instructions
        leaves = list(safety.flat(act.args))
        for path, value in leaves:
            name = safety.arg_name(path)
            what = safety.value_kind(name, value)
            if what is None:
                continue
            text = str(value)
            if what == "destination":
                outbound = outbound or write
            checked = [text] if what != "text" else sorted(safety.identifiers(text))
            for item in checked:
                hits_before = len(injected_hits)
                seen = safety.seen_in(item, state.corpus, state.ids)
                in_task = bool(task_norm) and safety.seen_in(item, task_norm, state.task_ids)
                urlish = bool(safety.URL_RE.fullmatch(item) or safety.EMAIL_RE.fullmatch(item))
                if not seen and had_context:
                    known = safety.norm(item) in profile.values.get(f"{act.tool}.{name}", set())
                    if what == "destination" or urlish:
                        weight = 0.85 if (write or urlish or outbound) else 0.4
                    elif what == "identifier":
                        secret = bool(safety.SECRET_ARGS.search(name))
                        weight = (0.85 if secret else 0.6) if write else 0.15
                    else:
                        weight = 0.8 if urlish else (0.45 if write else 0.1)
                    if known:
                        weight /= 2
                    add(
                        "unseen_value",
                        weight,
                        f"{name}={item[:80]!r} appears nowhere in the session",
                    )
                elif seen and not in_task:
                    for seg in state.segments:
                        if safety.seen_in(item, safety.norm(seg["text"]), set(seg["ids"])):
                            injected_hits.append(item)
                            base = 0.9 if seg["cue"] else 0.3
                            weight = base if (write or urlish) else base * 0.5
                            add(
                                "injected_value",
                                weight,
                                f"{name}={item[:80]!r} comes from an instruction in {seg['where']}",
                            )
                            break
                benign_values.append((in_task or seen) and len(injected_hits) == hits_before)
        if vectors is not None and state.segments:
            action_vec = vectors[0]
            task_sim = float(action_vec @ state.task_vec) if state.task_vec is not None else 0.0
            for seg in state.segments:
                if seg.get("vec") is None:
                    continue
                sim = float(action_vec @ np.asarray(seg["vec"], dtype=np.float32))
                if sim > 0.35 and sim > task_sim + 0.05:
                    base = 0.85 if seg["cue"] else 0.25
                    if benign_values and all(benign_values):
                        base = min(base, 0.3)  # its values come from the task or clean data
                    add(
                        "follows_instruction",
                        base if write else base * 0.45,
                        f"the call matches an instruction in {seg['where']} (cosine {sim:.2f}) more "
                        f"than the task ({task_sim:.2f})",
                    )
        if state.taint and write:
            add(
                "tainted", 0.3, "an earlier tool result carried instructions addressed to the agent"
            )

        # -- what the call does ---------------------------------------------------------------
        if write and state.task and not safety.requested(act.tool, state.task):
            add("unrequested", 0.35, f"the task does not ask for what {act.tool} does")
        if write and kind.privileged:
            add("privilege", 0.35, f"{act.tool} changes credentials, roles or permissions")
        if write and any(safety.SECRET_ARGS.search(safety.arg_name(p)) for p, _ in leaves):
            add("privilege", 0.35, f"{act.tool} sets a secret")
        if write and kind.destructive:
            add("destructive", 0.3, f"{act.tool} deletes or revokes")
        if outbound and write:
            sent = " ".join(
                str(v)
                for p, v in leaves
                if safety.value_kind(safety.arg_name(p), v) in {"text", "identifier"}
            )
            found = safety.sensitive(sent)
            if "secret" in found:
                add("secret_outbound", 0.5, "a secret (password, key, code) goes out in the call")
            personal = [k for k in found if k != "secret"]
            from_data = [i for i in safety.identifiers(sent) if i not in state.task_ids]
            if personal and len(from_data) >= 2:
                add(
                    "personal_outbound",
                    min(0.5, 0.15 * len(from_data)),
                    f"{len(from_data)} identifiers from tool results go out ({', '.join(personal)})",
                )

        # what the session accumulates: data from tool results going out, privilege climbed
        sent_out: set[str] = set()
        if outbound and write:
            sent = " ".join(
                str(v) for p, v in leaves if safety.value_kind(safety.arg_name(p), v) == "text"
            )
            sent_out = {i for i in safety.identifiers(sent) if i in state.ids} - state.task_ids
        level = safety.privilege_level([act.tool, *(str(v) for _, v in leaves)]) if write else 0

        risk = 1.0
        for weight in signals.values():
            risk *= 1.0 - weight
        risk = round(1.0 - risk, 4)
        action_decision: Decision = (
            "deny" if risk >= policy.deny else "warn" if risk >= policy.warn else "allow"
        )

        # -- session risk memory ----------------------------------------------------------------
        session_risk = state.remember(
            risk,
            vectors[0] if vectors is not None else None,
            profile.anchor,
            policy,
            sent_out=sent_out,
            level=level,
        )
        decision: Decision = action_decision
        if policy.session_memory:
            if session_risk >= policy.session_deny:
                decision = "deny"
                add(
                    "session",
                    session_risk,
                    f"session risk {session_risk:.2f} crossed {policy.session_deny}: the run has "
                    "drifted over several steps",
                )
            elif session_risk >= policy.session_warn and decision == "allow":
                decision = "warn"
        if decision != "deny":
            state.observe_args(act.args)
        state.seq += 1
        reasons.sort(key=lambda r: -r.weight)
        return (
            GateDecision(
                run_id=run_id,
                seq=state.seq,
                decision=decision,
                risk=risk,
                session_risk=round(session_risk, 4),
                action_decision=action_decision,
                reasons=reasons,
                evidence=list(dict.fromkeys(evidence)),
                signals={k: v for k, v in signals.items() if k != "session"},
                session_signals=dict(state.parts),
            ),
            state,
        )

    def _embed(
        self, act: GateAction, state: SessionMemory, reasons: list[GateReason]
    ) -> np.ndarray | None:
        """One embedding call: the action, and the task and new instruction passages when they
        have no vector yet. None (with a reason) when the store cannot embed."""
        texts = [safety.action_text(act.tool, act.args)]
        need_task = state.task is not None and state.task_vec is None
        if need_task:
            texts.append(state.task or "")
        pending = [
            s for s in state.segments if s.get("vec") is None and (s["cue"] or s["score"] >= 0.5)
        ]
        texts += [s["text"][:1000] for s in pending]
        try:
            vectors = self.store.embed(texts)
        except ModelMismatch as exc:
            reasons.append(GateReason(signal="no_embeddings", detail=str(exc)[:300], weight=0.0))
            return None
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        position = 1
        if need_task:
            state.task_vec = vectors[1]
            position = 2
        for seg, vec in zip(pending, vectors[position:], strict=True):
            seg["vec"] = [round(float(x), 5) for x in vec]
        return vectors

    # -- profiles -------------------------------------------------------------------------------
    def profile(self, role: str | None) -> Profile:
        """The role's profile from stored successful runs (all of the namespace's when no role)
        and the namespace's failed calls, cached for a minute and while the count is unchanged."""
        now = time.monotonic()
        cached = self._profiles.get(role)
        if cached is not None and now - cached[0] < PROFILE_TTL:
            return cached[2]
        count = self.records.count_experiences()
        if cached is not None and cached[1] == count:
            self._profiles[role] = (now, count, cached[2])
            return cached[2]
        profile = self._build_profile(role)
        self._profiles[role] = (now, count, profile)
        return profile

    def invalidate(self) -> None:
        """Forget the cached profiles (after a bulk import, in tests and benchmarks)."""
        self._profiles.clear()

    def _build_profile(self, role: str | None) -> Profile:
        profile = Profile()
        ids: list[str] = []
        for exp in self.records.iter_experiences():
            if exp.merged_into is not None:
                continue
            if exp.outcome == Outcome.failure:
                for step in exp.steps:
                    if step.tool and step.error:
                        profile.pitfalls.setdefault(step.tool, []).append(
                            (step.args or {}, step.error[:200], exp.id)
                        )
                continue
            if exp.outcome != Outcome.success:
                continue
            if role is not None and role not in {
                exp.agent,
                exp.domain,
                *exp.tags,
                *(s.agent for s in exp.steps),
            }:
                continue
            profile.runs += 1
            ids.append(exp.id)
            for step in exp.steps:
                if not step.tool or step.kind in {"observation", "error"}:
                    continue
                if len(profile.actions) < 256:
                    text = safety.action_text(step.tool, step.args or {})
                    if text not in profile.actions:
                        profile.actions.append(text)
                profile.tools[step.tool] += 1
                profile.evidence.setdefault(step.tool, [])
                if len(profile.evidence[step.tool]) < 5:
                    profile.evidence[step.tool].append(exp.id)
                profile.arg_keys.setdefault(step.tool, set()).update((step.args or {}).keys())
                for path, value in safety.flat(step.args or {}):
                    if isinstance(value, str) and len(value) <= 200:
                        key = f"{step.tool}.{safety.arg_name(path)}"
                        profile.values.setdefault(key, set()).add(safety.norm(value))
            if len(ids) >= 5000:
                break
        if profile.actions:
            try:
                vectors = self.store.embed(profile.actions)
            except ModelMismatch:
                return profile
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
            profile.action_vecs = vectors
            mean = vectors.mean(axis=0)
            profile.anchor = mean / max(float(np.linalg.norm(mean)), 1e-9)
        return profile


def _similar_args(stored: Mapping[str, Any], given: Mapping[str, Any]) -> bool:
    a = {(k, safety.norm(str(v))) for k, v in safety.flat(stored)}
    b = {(k, safety.norm(str(v))) for k, v in safety.flat(given)}
    if not a and not b:
        return True
    return len(a & b) / max(1, len(a | b)) >= 0.5


def _schema_errors(schema: Mapping[str, Any], args: Mapping[str, Any]) -> str:
    import jsonschema

    validator = jsonschema.Draft202012Validator(dict(schema))
    errors = sorted(validator.iter_errors(dict(args)), key=lambda e: list(e.path))
    return "; ".join(
        f"{'.'.join(str(p) for p in e.path) or '(arguments)'}: {e.message[:120]}"
        for e in errors[:3]
    )


__all__ = [
    "Gate",
    "GateAction",
    "GateDecision",
    "GatePolicy",
    "GateReason",
    "GateSession",
    "GateStep",
    "RoleRules",
]
