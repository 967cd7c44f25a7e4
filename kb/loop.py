"""The Reason-Retrieve-Refine loop of ``KnowledgeBase``: retrieve, refine, admission control, outcome-aware ranking.

* :meth:`LoopOps.retrieve` (plan stage, Agent KB's "student"): strategies from similar successes,
  skills (validated first), pitfalls from similar failures with their attributed step and reason,
  packed into one context block within a token budget.
* :meth:`LoopOps.refine` (mid-run, the "teacher"): the current state (last steps and the error)
  matched against stored decision points: what other runs did next, the repairs that followed
  similar failures, and skills for the next step.
* Admission control (Learning to Share): ``add_experience(..., policy="dedupe" | "novelty")`` merges
  near-duplicates into the existing record instead of adding a new one.
* Outcome-aware ranking: relevance blended with success rate and recency
  (:func:`kb.retrieval.outcome_factor`), automatically on once enough feedback exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any

import numpy as np

from kb.errors import Invalid
from kb.models import (
    Edge,
    Experience,
    ExperienceCreate,
    ExperienceRow,
    Kind,
    Outcome,
    SearchHit,
    Skill,
    SkillStatus,
    Step,
    kind_of,
    utcnow,
)
from kb.retrieval import (
    MIN_BUDGET,
    WINDOW_STEPS,
    Filters,
    Fused,
    MemoryItem,
    OutcomeRanking,
    RefineBundle,
    RetrieveBundle,
    clip,
    experience_text,
    fuse,
    multiset_jaccard,
    outcome_factor,
    plan_signature,
    prf_profile,
    provenance_label,
    render_context,
    sig_tools,
    skill_statuses,
    skill_text,
    step_line,
    step_windows,
    structure_ranking,
    window_text,
)
from kb.stores.vectors import WindowIndex, columns, quote

if TYPE_CHECKING:
    from kb.service import AddResult, KnowledgeBase, Progress

POLICIES: dict[str, tuple[float, float] | None] = {
    "admit": None,
    "dedupe": (0.95, 1.0),
    "novelty": (0.90, 0.8),
}
"""Admission policies: ``(min cosine of meaning, min signature similarity)`` to merge, or None.

``dedupe`` merges only exact-meaning duplicates: cosine >= 0.95 between the embedded texts (task,
strategy, plan, lessons), the identical tool signature and the same outcome. ``novelty`` admits only
what is new: cosine >= 0.90, tool-multiset Jaccard >= 0.8 and the same outcome are merged."""

DEFAULT_OUTCOME_RANKING = OutcomeRanking()
WINDOWS_AT_ONCE = 16
"""Writes of up to this many experiences build their step windows at once; larger ones defer."""


def _as_steps(trajectory: Sequence[Step | Mapping[str, Any]]) -> list[Step]:
    """Steps from ``Step`` objects, step dicts, or OpenAI chat messages."""
    items = list(trajectory)
    if not items:
        return []
    if all(isinstance(i, Step) for i in items):
        return list(items)  # type: ignore[arg-type]
    first = items[0]
    if isinstance(first, Mapping) and ("tool_calls" in first or "index" not in first):
        from kb.importers import steps_from_messages

        return steps_from_messages(items)
    try:
        return [
            s if isinstance(s, Step) else Step.model_validate({**s, "index": n})
            for n, s in enumerate(items)
        ]
    except ValueError as exc:
        raise Invalid(f"trajectory: {exc}") from exc


def _age_days(item: Experience | Skill) -> float:
    stamp = item.provenance.created_at if isinstance(item, Experience) else item.updated_at
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return (utcnow() - stamp).total_seconds() / 86_400


class LoopOps:
    """Mixed into :class:`kb.service.KnowledgeBase`."""

    _window_index: WindowIndex | None = None

    # -- admission control ----------------------------------------------------------------------
    def admit_experiences(
        self: KnowledgeBase,
        experiences: Iterable[ExperienceCreate | Mapping[str, Any]],
        *,
        policy: str = "admit",
        progress: Progress | None = None,
    ) -> list[AddResult]:
        """Record experiences under an admission policy; one result per input, in order.

        Args:
            policy: ``admit`` adds every input as a new record. ``dedupe`` merges an input into an
                existing record (in the store or earlier in the batch) with the same meaning
                (cosine >= 0.95), the same tool signature and the same outcome. ``novelty`` merges
                anything close enough (cosine >= 0.90, signature Jaccard >= 0.8, same outcome).
                A merge keeps the input as its own record (readable by id, hidden from search),
                links it ``merged_into`` the existing one, and adds to that one's ``count`` and
                ``merged_ids``: nothing is lost.
        Returns:
            ``AddResult(id, action)`` per input: the new id and ``added``, or the id of the record
            it was merged into and ``merged``.
        """
        if policy not in POLICIES:
            raise Invalid(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        items = self._validated(experiences)
        self._ready()
        results: list[AddResult] = []
        for start in range(0, len(items), 256):
            chunk = items[start : start + 256]
            results += self._admit(chunk, policy)
            if progress:
                progress(len(chunk))
        return results

    def _admit(self: KnowledgeBase, items: list[Experience], policy: str) -> list[AddResult]:
        from kb.service import AddResult

        if policy not in POLICIES:
            raise Invalid(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        thresholds = POLICIES[policy]
        if thresholds is None:
            self._store_windowed(items)
            return [AddResult(id=i.id) for i in items]
        min_cos, min_sig = thresholds
        vectors = self._embed([self.embed_text(i) for i in items])
        accepted: list[int] = []
        merges: dict[int, str] = {}
        for pos, (item, vector) in enumerate(zip(items, vectors, strict=True)):
            target = next(
                (
                    items[j].id
                    for j in accepted
                    if items[j].outcome == item.outcome
                    and float(vector @ vectors[j]) >= min_cos
                    and self._same_procedure(items[j].signature, item.signature, min_sig)
                ),
                None,
            ) or self._near_duplicate(item, vector, min_cos, min_sig)
            if target is None:
                accepted.append(pos)
            else:
                merges[pos] = target
        self._store_windowed([items[j] for j in accepted], vectors=vectors[accepted])
        for pos, target in merges.items():
            self._merge(items[pos], vectors[pos], target)
        return [
            AddResult(id=merges[pos], action="merged") if pos in merges else AddResult(id=item.id)
            for pos, item in enumerate(items)
        ]

    @staticmethod
    def _same_procedure(a: Sequence[str], b: Sequence[str], min_sig: float) -> bool:
        if min_sig >= 1.0:
            return list(a) == list(b)
        return (not a and not b) or multiset_jaccard(a, b) >= min_sig

    def _near_duplicate(
        self: KnowledgeBase, item: Experience, vector: np.ndarray, min_cos: float, min_sig: float
    ) -> str | None:
        where = (
            f"namespace = {quote(self.namespace)} AND kind = 'experience' AND latest = true "
            f"AND outcome = {quote(item.outcome.value)}"
        )
        for item_id, score in self.index.vector_search(vector, k=5, where=where):
            if score < min_cos:
                break
            found = self.records.get_experiences([item_id]).get(item_id)
            if (
                found is not None
                and found.merged_into is None
                and self._same_procedure(found.signature, item.signature, min_sig)
            ):
                return item_id
        return None

    def _merge(self: KnowledgeBase, dup: Experience, vector: np.ndarray, target: str) -> None:
        canonical = self.get_experience(target)
        canonical = canonical.model_copy(
            update={
                "count": canonical.count + dup.count,
                "merged_ids": [*canonical.merged_ids, dup.id],
                "updated_at": utcnow(),
            }
        )
        edge = Edge(src=dup.id, dst=canonical.id, kind="merged_into")

        def link(session: Any) -> None:
            self.records.put_edges(session, [edge])
            self._bump_graph(session)

        canon_vector = self._embed([self.embed_text(canonical)])[0]
        self._store(
            [dup.model_copy(update={"merged_into": canonical.id}), canonical],
            vectors=np.stack([vector, canon_vector]),
            replace=True,
            before_commit=link,
        )

    # -- step windows: a second derived table, kept in step with SQL ----------------------------
    @property
    def windows(self: KnowledgeBase) -> WindowIndex:
        """The step-window table used by :meth:`refine`."""
        if self._window_index is None:
            self._window_index = WindowIndex(self.index.db)
        return self._window_index

    def _window_meta(self: KnowledgeBase) -> tuple[str, str]:
        return f"windows:{self.namespace}", f"windows_pending:{self.namespace}"

    def _store_windowed(
        self: KnowledgeBase, items: list[Experience], *, vectors: np.ndarray | None = None
    ) -> None:
        """The write path with step windows.

        The SQL transaction also records the new experiences as pending windows (and counts
        them). A small write (an agent recording its run) then builds its windows at once; a bulk
        write (an import) leaves them to the next :meth:`refine` or :meth:`rebuild_windows`, so an
        import does not pay for them up front. A crash leaves them pending, never lost.
        """
        if not items:
            return
        with_steps = [i.id for i in items if i.steps]
        state_key, pending_key = self._window_meta()

        def mark(session: Any) -> None:
            pending = json.loads(self.sql.get_meta(pending_key) or "[]")
            state = json.loads(self.sql.get_meta(state_key) or "{}")
            values = {pending_key: json.dumps(pending + with_steps)}
            if state.get("model") in (None, self.model_name):
                count = int(state.get("count", 0)) + len(items)
                values[state_key] = json.dumps({"model": self.model_name, "count": count})
            self.sql.set_meta(values, session)

        self._store(items, vectors=vectors, before_commit=mark)
        if with_steps and len(with_steps) <= WINDOWS_AT_ONCE:
            self._write_windows([i for i in items if i.steps])
            self._windows_done(with_steps)

    def _write_windows(self: KnowledgeBase, exps: Sequence[Experience]) -> int:
        specs = [(exp, w) for exp in exps for w in step_windows(exp.task, exp.steps)]
        if not specs:
            return 0
        self._check_model()
        # Straight to the model: window texts are many and never re-embedded, so not cached.
        vectors = self.embedder.inner.encode([w[2] for _, w in specs])
        rows = [
            {
                "id": f"{exp.id}:{step}",
                "exp_id": exp.id,
                "namespace": exp.namespace,
                "outcome": exp.outcome.value,
                "domain": exp.domain,
                "source_id": exp.provenance.source_id,
                "step": step,
                "error": has_error,
                "text": text,
                "next": json.dumps(payload, ensure_ascii=False),
                "model": self.model_name,
                "dim": int(vectors.shape[1]),
                "vector": vector.astype(np.float32),
            }
            for (exp, (step, has_error, text, payload)), vector in zip(specs, vectors, strict=True)
        ]
        with self._writing():
            self.windows.upsert(rows)
        return len(rows)

    def _windows_done(self: KnowledgeBase, ids: Sequence[str]) -> None:
        _, pending_key = self._window_meta()
        with self._writing():
            done = set(ids)
            pending = json.loads(self.sql.get_meta(pending_key) or "[]")
            self.sql.set_meta({pending_key: json.dumps([i for i in pending if i not in done])})

    def _sync_windows(self: KnowledgeBase) -> None:
        """Repair the window table: pending writes after a crash, other writers, a new model."""
        state_key, pending_key = self._window_meta()
        state = json.loads(self.sql.get_meta(state_key) or "{}")
        total = self.sql.count(ExperienceRow, ExperienceRow.namespace == self.namespace)
        if state.get("model") not in (None, self.model_name):
            self.rebuild_windows()
            return
        pending = json.loads(self.sql.get_meta(pending_key) or "[]")
        for start in range(0, len(pending), 256):
            chunk = pending[start : start + 256]
            found = self.records.get_experiences(chunk)
            self.windows.delete_experiences(list(found))
            self._write_windows([e for e in found.values() if e.merged_into is None])
            self._windows_done(chunk)
        if int(state.get("count", 0)) != total:
            sql_ids = {i for i in self.records.ids() if kind_of(i) == "experience"}
            have = self.windows.exp_ids()
            orphans = have - sql_ids
            missing = sorted(sql_ids - have)
            self.windows.delete_experiences(sorted(orphans))
            for start in range(0, len(missing), 256):
                chunk = self.records.get_experiences(missing[start : start + 256])
                self._write_windows(
                    [e for e in chunk.values() if e.steps and e.merged_into is None]
                )
            self.sql.set_meta({state_key: json.dumps({"model": self.model_name, "count": total})})

    def rebuild_windows(self: KnowledgeBase) -> int:
        """Rebuild this namespace's step windows from SQL; returns how many windows were written."""
        state_key, pending_key = self._window_meta()
        with self._writing():
            self.windows.drop()
        written = total = 0
        batch: list[Experience] = []
        for exp in self.records.iter_experiences():
            total += 1
            if exp.steps and exp.merged_into is None:
                batch.append(exp)
            if len(batch) >= 256:
                written += self._write_windows(batch)
                batch = []
        written += self._write_windows(batch)
        self.sql.set_meta(
            {state_key: json.dumps({"model": self.model_name, "count": total}), pending_key: "[]"}
        )
        with self._writing():
            self.windows.optimize()
        return written

    # -- outcome-aware ranking -------------------------------------------------------------------
    def _outcome_on(self: KnowledgeBase, outcome_aware: bool | None) -> bool:
        if outcome_aware is not None:
            return outcome_aware
        return self.stats().events >= DEFAULT_OUTCOME_RANKING.min_events

    def _rerank_outcomes(
        self: KnowledgeBase, hits: list[SearchHit], outcome_aware: bool | None
    ) -> list[SearchHit]:
        """Apply :func:`kb.retrieval.outcome_factor` to hits when on (see ``outcome_aware``)."""
        if not hits or not self._outcome_on(outcome_aware):
            return hits
        records = self.records.get_any([h.id for h in hits])
        out = []
        for hit in hits:
            item = records.get(hit.id)
            if item is None:
                continue
            factor = outcome_factor(
                item.uses, item.successes, _age_days(item), DEFAULT_OUTCOME_RANKING
            )
            out.append(hit.model_copy(update={"score": round(hit.score * factor, 6)}))
        return sorted(out, key=lambda h: -h.score)

    # -- structure: signature match with pseudo-relevance feedback ------------------------------
    def _structure_signal(
        self: KnowledgeBase,
        fused: list[Fused],
        bm25: list[tuple[str, float]],
        *,
        signature: list[str] | None,
        prf: int,
        n: int,
        where: str,
    ) -> list[tuple[str, float]]:
        """The ``structure`` ranking: candidates' tool sets against the query's tool profile.

        The profile is the given signature, or (pseudo-relevance feedback) the tools of the best
        ``prf`` first-pass hits weighted by their fused score. Candidates are the first-pass hits
        plus the BM25 matches of the profile's tools over stored signatures, so a run with the same
        procedure and no shared word is found too.
        """
        pool = [f.id for f in fused[:n]]
        if signature:
            profile = dict.fromkeys(signature, 1.0)
        else:
            top = fused[:prf]
            sigs = columns(self.index, [f.id for f in top], ["sig"])
            profile = prf_profile(
                [(f.score, sig_tools(sigs.get(f.id, {}).get("sig"))) for f in top]
            )
            if profile:
                from kb import documents as docs

                tokens = docs.signature_tokens(list(profile))
                bm25 = self.index.text_search(tokens, k=n, where=where, column="sig")
        if not profile:
            return []
        pool += [i for i, _ in bm25 if i not in set(pool)]
        sigs = columns(self.index, pool, ["sig"])
        candidates = {i: sig_tools(row.get("sig")) for i, row in sigs.items()}
        return structure_ranking(profile, candidates)[:n]

    # -- retrieve (plan stage) ------------------------------------------------------------------
    def retrieve(
        self: KnowledgeBase,
        task: str,
        *,
        plan: Sequence[str] | None = None,
        signature: Sequence[str] | None = None,
        k: int = 5,
        budget_tokens: int = 1200,
        mode: str = "hybrid",
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
        plan = list(plan or [])
        sig = list(signature) if signature else plan_signature(plan)
        query = "\n".join([task, *plan])
        use_structure = structure and mode == "hybrid"
        outcome_on = self._outcome_on(outcome_aware)
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
            hits = self._search(
                query,
                search_k,
                mode=mode,
                filters=filters,
                signature=sig if use_structure and sig and kind == "experience" else None,
                graph=graph,
                weights=self.weights,
                prf=prf if use_structure and not sig and kind == "experience" else 0,
            )
            return self._rerank_outcomes(hits, outcome_on)[:k]

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
            f"Task: {clip(task, 300)}", sections, budget_tokens, self.embedder.count_tokens
        )
        return bundle

    def _linked(
        self: KnowledgeBase,
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
        graph = self.graph  # one freshness check, not one per item
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
            hit = self._hit(record, seed.score * 0.5, {})
            linked = self._item(
                hit, "pitfall" if section == "repair" else section, via=f"{kind} from {seed.id}"
            )
            target = {"skill": skills, "strategy": strategies}.get(section, pitfalls)
            if len(target) < k + 3:
                target.append(linked)

    def _item(
        self: KnowledgeBase, hit: SearchHit, section: str, *, via: str | None = None
    ) -> MemoryItem:
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
        self: KnowledgeBase,
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
        self._ready()
        self._sync_windows()
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
        from kb import documents as docs

        vector = self._embed([state])[0]
        by_vector = self.windows.search(vector, k=n, where=where)
        recent = "\n".join(step_line(s) for s in steps) or task
        by_words = self.windows.text_search(docs.fts_query(recent), k=n, where=where)
        rows = {r["id"]: r for r in [*by_words, *by_vector]}
        fused = fuse(
            {
                "vector": [(r["id"], r["score"]) for r in by_vector],
                "lexical": [(r["id"], r["score"]) for r in by_words],
            },
            self.weights,
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
        graph = self.graph
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
                hit = self._hit(fixed, entry.score * 0.5, {})
                bundle.repairs.append(self._item(hit, "repair", via=f"repaired_by from {exp.id}"))
        skill_query = "\n".join([task, recent, error or ""]).strip()
        statuses = skill_statuses(include_drafts=include_drafts)
        skill_hits = self._search(
            skill_query,
            k,
            mode="hybrid",
            graph=True,
            weights=self.weights,
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
        intro = f"Task: {clip(task, 200)}\nCurrent state:\n{clip(state, 600)}"
        bundle.context, bundle.tokens = render_context(
            intro, sections, budget_tokens, self.embedder.count_tokens
        )
        return bundle


__all__ = ["POLICIES", "LoopOps", "MemoryItem", "RefineBundle", "RetrieveBundle"]


def _check_request(task: str, k: int, budget_tokens: int) -> None:
    """The arguments ``retrieve`` and ``refine`` share, checked with messages naming them."""
    if not task or not task.strip():
        raise Invalid("task must not be empty")
    if not 1 <= k <= 50:
        raise Invalid("k must be between 1 and 50")
    if budget_tokens < MIN_BUDGET:
        raise Invalid(f"budget_tokens must be at least {MIN_BUDGET}")
