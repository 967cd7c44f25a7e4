"""The Reason-Retrieve-Refine loop over one namespace.

* :meth:`Loop.retrieve` (plan stage, Agent KB's "student"): strategies from similar successes,
  skills (validated first), pitfalls from similar failures with their attributed step and reason,
  packed into one context block within a token budget.
* :meth:`Loop.refine` (mid-run, the "teacher"): the current state (last steps and the error)
  matched against stored decision points: what other runs did next, the repairs that followed
  similar failures, and skills for the next step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from kb import documents as docs
from kb.errors import Invalid
from kb.importers import describe, trajectory_from_any
from kb.models import Experience, Kind, Outcome, SearchHit, Skill, SkillStatus, Step, kind_of
from kb.retrieval import (
    MIN_BUDGET,
    WINDOW_STEPS,
    Filters,
    Fused,
    MemoryItem,
    Mode,
    RefineBundle,
    RetrieveBundle,
    check_mode,
    clip,
    experience_text,
    fuse,
    plan_signature,
    provenance_label,
    render_context,
    skill_statuses,
    skill_text,
    step_line,
    window_text,
)
from kb.services import Service
from kb.services.search import Search, hit
from kb.services.windows import SYNC_BUDGET_S, StepWindows
from kb.store import Store
from kb.stores.index import quote

WINDOW_COLUMNS = ("id", "exp_id", "outcome", "step", "error", "text", "next")


def _as_steps(trajectory: Any) -> list[Step]:
    """Steps from ``Step`` objects, or from a trajectory in any importable format (OpenAI or
    Anthropic messages, Responses items, spans, events, step dicts...: see docs/FORMATS.md)."""
    if isinstance(trajectory, Sequence) and not isinstance(trajectory, str | bytes):
        if not trajectory:
            return []
        if all(isinstance(i, Step) for i in trajectory):
            return list(trajectory)
        if all(isinstance(i, Mapping) and set(i) <= set(Step.model_fields) for i in trajectory):
            try:  # our own step shape: numbered in order where no index is given
                return [Step.model_validate({"index": n, **s}) for n, s in enumerate(trajectory)]
            except ValidationError as exc:
                raise Invalid(f"trajectory: {describe(exc)}") from exc
    return trajectory_from_any(trajectory, source="refine").steps


class Loop(Service):
    """Retrieve and refine over one namespace."""

    def __init__(self, store: Store, namespace: str, search: Search, windows: StepWindows):
        super().__init__(store, namespace)
        self.search = search
        self.windows = windows

    # -- retrieve (plan stage) ------------------------------------------------------------------
    def retrieve(
        self,
        task: str,
        *,
        plan: Sequence[str] | None = None,
        signature: Sequence[str] | None = None,
        k: int = 5,
        budget_tokens: int = 1200,
        mode: Mode = "hybrid",
        structure: bool = True,
        prf: int = 3,
        graph: bool = True,
        domain: str | None = None,
        tags: list[str] | None = None,
        include_drafts: bool = False,
        exclude_ids: Sequence[str] = (),
        exclude_source_ids: Sequence[str] = (),
        outcome_aware: bool | None = None,
    ) -> RetrieveBundle:
        """Memory for planning a task: strategies, skills and pitfalls, plus a context block.

        Args:
            task: what the agent is asked to do.
            plan: the agent's draft plan, if any (prose steps; tool names in it, bare or as
                ``tool(...)``, form the plan's signature).
            signature: the plan's tool sequence, given directly (overrides ``plan``'s).
            k: items per section (1 to 50).
            budget_tokens: the most tokens the context block may take (counted with the
                embedding model's tokenizer).
            mode: ``hybrid``, ``vector`` or ``lexical`` (structure applies to hybrid only).
            structure: match tool signatures (APEX-EM): the plan's, or when there is no plan one
                derived from the ``prf`` best first-pass hits (pseudo-relevance feedback).
            graph: bring in items linked to the hits (derived_from, repaired_by, depends_on).
            domain, tags, exclude_ids, exclude_source_ids: filters; ``include_drafts`` allows
                draft skills.
            outcome_aware: blend relevance with success rate and recency; None: on once the
                namespace has enough feedback.
        Returns:
            a :class:`RetrieveBundle`; ``context`` is the block to put in the agent's prompt.
        """
        _check_request(task, k, budget_tokens)
        check_mode(mode)
        plan = list(plan or [])
        sig = list(signature) if signature else plan_signature(plan)
        query = "\n".join([task, *plan])
        use_structure = structure and mode == "hybrid"
        outcome_on = self.search.outcome_on(outcome_aware)
        search_k = min(200, 2 * k) if outcome_on else k

        def run(kind: str, outcome: list[str] | None = None) -> list[SearchHit]:
            filters = Filters(
                kind=kind,
                outcome=outcome,
                domain=domain,
                tags=tags,
                status=skill_statuses(include_drafts=include_drafts),
                exclude_ids=list(exclude_ids),
                exclude_source_ids=list(exclude_source_ids),
            )
            hits = self.search.run(
                query,
                search_k,
                mode=mode,
                filters=filters,
                signature=sig if use_structure and sig and kind == "experience" else None,
                graph=graph,
                weights=self.search.weights,
                prf=prf if use_structure and not sig and kind == "experience" else 0,
            )
            return self.search.rerank_outcomes(hits, outcome_on)[:k]

        strategies = [self._item(h, "strategy") for h in run("experience", ["success"])]
        skill_hits = run("skill")
        skill_hits.sort(key=lambda h: (h.status != SkillStatus.validated, -h.score))
        skills = [self._item(h, "skill") for h in skill_hits]
        pitfalls = [self._item(h, "pitfall") for h in run("experience", ["failure", "partial"])]
        if graph:
            self._linked(strategies, skills, pitfalls, include_drafts=include_drafts, k=k)
        bundle = RetrieveBundle(
            task=task,
            strategies=strategies,
            skills=skills,
            pitfalls=pitfalls,
            signature=sig,
            budget_tokens=budget_tokens,
        )
        sections = [
            ("Strategies from similar successful runs", strategies),
            ("Skills that fit the task (validated first)", skills),
            ("Pitfalls from similar failed runs (with the attributed cause)", pitfalls),
        ]
        bundle.context, bundle.tokens = render_context(
            f"Task: {clip(task, 300)}", sections, budget_tokens, self.store.embedder.count_tokens
        )
        return bundle

    def _linked(
        self,
        strategies: list[MemoryItem],
        skills: list[MemoryItem],
        pitfalls: list[MemoryItem],
        *,
        include_drafts: bool,
        k: int,
    ) -> None:
        """Graph traversal: skills derived from the strategies or that the skills depend on, and
        the repairs of the pitfalls (``repaired_by``), each with the edge that reached it."""
        present = {i.id for i in [*strategies, *skills, *pitfalls]}
        allowed = set(skill_statuses(include_drafts=include_drafts))
        wanted: list[tuple[MemoryItem, str, str, str]] = []
        graph = self.store.graph(self.namespace)  # one freshness check, not one per item
        for item in [*strategies, *skills, *pitfalls]:
            for edge in graph.edges(item.id, kinds={"derived_from", "repaired_by", "depends_on"}):
                other = edge.dst if edge.src == item.id else edge.src
                if other in present:
                    continue
                if edge.kind == "repaired_by" and edge.src != item.id:
                    continue  # only follow a failure to its repair, not a repair back to failures
                section = (
                    "repair"
                    if edge.kind == "repaired_by"
                    else ("skill" if kind_of(other) == "skill" else "strategy")
                )
                wanted.append((item, other, edge.kind, section))
                present.add(other)
        if not wanted:
            return
        records = self.records.get_any([w[1] for w in wanted])
        for seed, other, kind, section in wanted:
            record = records.get(other)
            if record is None or (isinstance(record, Skill) and record.status not in allowed):
                continue
            if isinstance(record, Experience) and record.merged_into is not None:
                continue
            found = hit(record, seed.score * 0.5, {})
            linked = self._item(
                found, "pitfall" if section == "repair" else section, via=f"{kind} from {seed.id}"
            )
            target = {"skill": skills, "strategy": strategies}.get(section, pitfalls)
            if len(target) < k + 3:
                target.append(linked)

    def _item(self, hit: SearchHit, section: str, *, via: str | None = None) -> MemoryItem:
        record = hit.record or {}
        if hit.kind == Kind.skill:
            text = skill_text(record)
        else:
            text = experience_text(record, hit.attribution, section)
        return MemoryItem(
            id=hit.id,
            kind=hit.kind,
            section=section,
            title=hit.title,
            text=text,
            score=hit.score,
            outcome=hit.outcome,
            status=hit.status,
            provenance=provenance_label(hit.provenance),
            attribution=hit.attribution,
            signals={name: s.model_dump() for name, s in hit.signals.items()},
            via=via,
        )

    # -- refine (mid-run) -----------------------------------------------------------------------
    def refine(
        self,
        task: str,
        trajectory: Sequence[Step | Mapping[str, Any]],
        *,
        error: str | None = None,
        k: int = 5,
        budget_tokens: int = 800,
        domain: str | None = None,
        include_drafts: bool = False,
        exclude_ids: Sequence[str] = (),
        exclude_source_ids: Sequence[str] = (),
    ) -> RefineBundle:
        """Memory for the next step of a running task, matched at step level.

        The last few steps of ``trajectory`` (and ``error``) are summarised like the stored
        decision points of past runs (a window of recent steps, indexed once per decision point,
        not per raw step) and matched by meaning and words.

        Args:
            task: the task being run.
            trajectory: the steps so far: ``Step`` objects or dicts, or OpenAI chat messages.
            error: the error just met, if any.
            k: items per section (1 to 50).
            budget_tokens: the most tokens the context block may take.
            domain, exclude_ids, exclude_source_ids: filters on the matched runs.
        Returns:
            a :class:`RefineBundle`: ``next_steps`` (what runs that went on to succeed did next
            from a similar state), ``repairs`` (what followed similar errors, what a failed run's
            attributed step should have been, ``repaired_by`` links), ``skills`` for the next step.
        """
        _check_request(task, k, budget_tokens)
        steps = [s for s in _as_steps(trajectory) if s.role != "system"][-WINDOW_STEPS:]
        if error:
            steps.append(
                Step.model_validate(
                    {
                        "index": len(steps),
                        "agent": "tool",
                        "role": "tool",
                        "kind": "error",
                        "error": error,
                    }
                )
            )
        state = window_text(task, steps)
        self.store.ready()
        pending = self.windows.sync(budget_s=SYNC_BUDGET_S)
        parts = [f"namespace = {quote(self.namespace)}"]
        if domain:
            parts.append(f"domain = {quote(domain)}")
        if exclude_ids:
            parts.append(f"exp_id NOT IN ({', '.join(map(quote, exclude_ids))})")
        if exclude_source_ids:
            parts.append(
                f"(source_id IS NULL OR source_id NOT IN "
                f"({', '.join(map(quote, exclude_source_ids))}))"
            )
        where = " AND ".join(parts)
        n = max(10 * k, 50)
        vector = self.store.embed([state])[0]
        by_vector = self.store.windows.nearest(vector, k=n, where=where, columns=WINDOW_COLUMNS)
        recent = "\n".join(step_line(s) for s in steps) or task
        by_words = self.store.windows.matching(
            docs.fts_query(recent), k=n, where=where, columns=WINDOW_COLUMNS
        )
        rows = {r["id"]: r for r in [*by_words, *by_vector]}
        fused = fuse(
            {
                "vector": [(r["id"], r["score"]) for r in by_vector],
                "lexical": [(r["id"], r["score"]) for r in by_words],
            },
            self.search.weights,
        )
        exps = self.records.get_experiences(
            list(dict.fromkeys(rows[f.id]["exp_id"] for f in fused))
        )
        bundle = RefineBundle(task=task, state=state, budget_tokens=budget_tokens)
        seen: set[tuple[str, ...]] = set()
        failed: list[tuple[Experience, Fused]] = []
        for entry in fused:
            row = rows[entry.id]
            exp = exps.get(row["exp_id"])
            if exp is None or exp.merged_into is not None:
                continue
            payload = json.loads(row["next"])
            signals = {name: s.model_dump() for name, s in entry.signals.items()}
            common: dict[str, Any] = {
                "kind": Kind.experience,
                "title": clip(exp.task, 200),
                "score": round(entry.score, 6),
                "outcome": exp.outcome,
                "provenance": provenance_label(exp.provenance),
                "signals": signals,
            }
            action = payload.get("action") or ""
            outcome_note = f" (that run: {exp.outcome.value})"
            result = f" -> {payload['result']}" if payload.get("result") else ""
            key: tuple[str, ...] = (str(payload.get("tool") or ""), action[:80])
            if row["error"] and len(bundle.repairs) < k and ("r", *key) not in seen:
                seen.add(("r", *key))
                bundle.repairs.append(
                    MemoryItem(
                        id=exp.id,
                        section="repair",
                        attribution=exp.attribution,
                        text=f"After a similar error at step {row['step']}: {clip(row['text'], 400)} "
                        f"| next: {action}{result}{outcome_note}",
                        **common,
                    )
                )
            elif exp.outcome == Outcome.success and len(bundle.next_steps) < k and key not in seen:
                seen.add(key)
                bundle.next_steps.append(
                    MemoryItem(
                        id=exp.id,
                        section="next_step",
                        text=f"From a similar state (step {row['step']}): next {action}{result}",
                        **common,
                    )
                )
            if exp.outcome in {Outcome.failure, Outcome.partial} and exp.attribution is not None:
                mark = exp.attribution
                if mark.step is not None and abs(mark.step - int(payload.get("step", -99))) <= 2:
                    failed.append((exp, entry))
        graph = self.store.graph(self.namespace)
        for exp, entry in failed:
            if len(bundle.repairs) >= k + 3 or any(r.id == exp.id for r in bundle.repairs):
                continue
            att = exp.attribution
            assert att is not None
            fix = f" Should have been: {clip(att.corrected, 200)}." if att.corrected else ""
            bundle.repairs.append(
                MemoryItem(
                    id=exp.id,
                    kind=Kind.experience,
                    section="repair",
                    title=clip(exp.task, 200),
                    score=round(entry.score, 6),
                    outcome=exp.outcome,
                    attribution=att,
                    provenance=provenance_label(exp.provenance),
                    text=f"A run failed from a similar state at step {att.step}"
                    f"{' by ' + att.agent if att.agent else ''}: {clip(att.reason, 240)}.{fix}",
                )
            )
            for edge in graph.edges(exp.id, kinds={"repaired_by"}):
                if edge.src != exp.id:
                    continue
                fixed = self.records.get_any([edge.dst]).get(edge.dst)
                if fixed is None:
                    continue
                repair = hit(fixed, entry.score * 0.5, {})
                bundle.repairs.append(
                    self._item(repair, "repair", via=f"repaired_by from {exp.id}")
                )
        skill_query = "\n".join([task, recent, error or ""]).strip()
        statuses = skill_statuses(include_drafts=include_drafts)
        skill_hits = self.search.run(
            skill_query,
            k,
            mode="hybrid",
            graph=True,
            weights=self.search.weights,
            signature=None,
            filters=Filters(kind="skill", status=statuses, domain=domain),
        )
        skill_hits.sort(key=lambda h: (h.status != SkillStatus.validated, -h.score))
        bundle.skills = [self._item(h, "skill") for h in skill_hits]
        sections = [
            ("What runs that succeeded did next from a similar state", bundle.next_steps),
            ("Repairs after similar errors and failures", bundle.repairs),
            ("Skills for the next step (validated first)", bundle.skills),
        ]
        bundle.pending = pending
        note = (
            f"\nIncomplete: the step windows of {pending} stored runs are still being built "
            "(the next refine continues); these matches leave them out."
            if pending
            else ""
        )
        intro = f"Task: {clip(task, 200)}{note}\nCurrent state:\n{clip(state, 600)}"
        bundle.context, bundle.tokens = render_context(
            intro, sections, budget_tokens, self.store.embedder.count_tokens
        )
        return bundle


__all__ = ["Loop", "MemoryItem", "RefineBundle", "RetrieveBundle"]


def _check_request(task: str, k: int, budget_tokens: int) -> None:
    """The arguments ``retrieve`` and ``refine`` share, checked with messages naming them."""
    if not task or not task.strip():
        raise Invalid("task must not be empty")
    if not 1 <= k <= 50:
        raise Invalid("k must be between 1 and 50")
    if budget_tokens < MIN_BUDGET:
        raise Invalid(f"budget_tokens must be at least {MIN_BUDGET}")
