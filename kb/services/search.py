"""Hybrid search over the experiences and skills of one namespace.

Vector + BM25 + structural signature (APEX-EM, with pseudo-relevance feedback) + graph expansion,
fused by weighted reciprocal rank fusion (:mod:`kb.retrieval`); outcome-aware ranking blends
relevance with success rate and recency once enough feedback exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC
from typing import Any

from kb import documents as docs
from kb.errors import Invalid
from kb.models import (
    Experience,
    Kind,
    Outcome,
    SearchHit,
    Skill,
    SkillStatus,
    choice,
    utcnow,
)
from kb.retrieval import (
    CANDIDATES,
    Filters,
    Fused,
    Mode,
    OutcomeRanking,
    Weights,
    check_mode,
    collapse_duplicates,
    fuse,
    graph_ranking,
    outcome_factor,
    prf_profile,
    sig_tools,
    skill_statuses,
    structure_ranking,
)
from kb.services import Service
from kb.store import Store
from kb.stores.index import quote

_QUERY_POOL = ThreadPoolExecutor(max_workers=3, thread_name_prefix="kb-query")
DEFAULT_OUTCOME_RANKING = OutcomeRanking()


class Search(Service):
    """Search of one namespace."""

    def __init__(self, store: Store, namespace: str):
        super().__init__(store, namespace)
        settings = store.settings
        self.weights = Weights(
            vector=settings.w_vector,
            lexical=settings.w_lexical,
            structure=settings.w_structure,
            graph=settings.w_graph,
            plan=settings.w_plan,
            rrf_k=settings.rrf_k,
            fusion=settings.fusion,
        )

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        kind: Kind | str | None = None,
        mode: Mode = "hybrid",
        outcome: Outcome | str | list[str] | None = None,
        domain: str | None = None,
        tags: list[str] | None = None,
        status: list[str] | None = None,
        include_drafts: bool = False,
        signature: list[str] | None = None,
        graph: bool = True,
        exclude_ids: Sequence[str] = (),
        exclude_source_ids: Sequence[str] = (),
        weights: Weights | None = None,
        prf: int = 0,
        outcome_aware: bool | None = False,
        diverse: bool = True,
    ) -> list[SearchHit]:
        """Hybrid search over experiences and skills of this namespace.

        Args:
            query: free text.
            k: how many hits (1 to 200).
            kind: ``experience`` or ``skill``; both when None.
            mode: ``hybrid`` (vector + lexical + structure + graph), ``vector`` or ``lexical``.
            outcome, domain, tags: filters on experiences (tags: any of).
            status: skill statuses to allow (default: validated and approved).
            include_drafts: also allow draft skills.
            signature: a tool sequence to match structurally (experiences).
            graph: expand the best hits along stored edges.
            prf: with no ``signature``, derive one from this many first-pass hits (pseudo-relevance
                feedback) and match it structurally; 0 turns it off.
            outcome_aware: blend relevance with success rate and recency
                (:func:`kb.retrieval.outcome_factor`); None: on once enough feedback exists.
            diverse: collapse near-duplicates into the best of them (their ids stay in the
                kept hit's ``duplicates``).
        Returns:
            hits, best first, each with the rank and score of every signal that found it.
        """
        if not query or not query.strip():
            raise Invalid("query must not be empty")
        check_mode(mode)
        if not 1 <= k <= 200:
            raise Invalid("k must be between 1 and 200")
        if kind is not None and kind not in {"experience", "skill"}:
            raise Invalid(f"kind must be experience or skill, not {kind!r}")
        outcomes = [outcome] if isinstance(outcome, str) else outcome
        filters = Filters(
            kind=Kind(kind).value if kind else None,
            outcome=[choice(Outcome, o, "outcome").value for o in outcomes or []] or None,
            domain=domain,
            tags=list(tags) if tags else None,
            status=skill_statuses(include_drafts=include_drafts, status=status),
            exclude_ids=list(exclude_ids),
            exclude_source_ids=list(exclude_source_ids),
        )
        hits = self.run(
            query,
            k,
            mode=mode,
            filters=filters,
            signature=signature,
            graph=graph,
            weights=weights or self.weights,
            prf=prf,
            diverse=diverse,
        )
        return self.rerank_outcomes(hits, outcome_aware)

    def _rankings(
        self,
        query: str,
        n: int,
        *,
        mode: str,
        where: str,
        signature: list[str] | None,
        rows: dict[str, dict[str, Any]],
    ) -> dict[str, list[tuple[str, float]]]:
        """Each signal's ranked ``(id, score)`` list; ``rows`` collects the vector and signature
        of every candidate (for near-duplicate collapse)."""
        items = self.store.items
        columns = ("id", "vector", "sig")
        queries: dict[str, Callable[[], list[dict[str, Any]]]] = {}
        if mode in {"hybrid", "vector"}:
            vector = self.store.embed([query])[0]
            queries["vector"] = lambda: items.nearest(vector, k=n, where=where, columns=columns)
        if mode in {"hybrid", "lexical"}:
            text = docs.fts_query(query)
            queries["lexical"] = lambda: items.matching(text, k=n, where=where, columns=columns)
        if signature and mode == "hybrid":
            tokens = docs.signature_tokens(signature)
            queries["structure"] = lambda: items.matching(
                tokens, k=n, where=where, column="sig", columns=columns
            )
        if len(queries) == 1:
            found = {name: run() for name, run in queries.items()}
        else:
            # LanceDB runs each query in Rust without the GIL: side by side they use both cores.
            futures = {name: _QUERY_POOL.submit(run) for name, run in queries.items()}
            found = {name: future.result() for name, future in futures.items()}
        for ranked in found.values():
            for row in ranked:
                rows.setdefault(row["id"], row)
        return {name: [(r["id"], r["score"]) for r in ranked] for name, ranked in found.items()}

    def run(
        self,
        query: str,
        k: int,
        *,
        mode: str,
        filters: Filters,
        signature: list[str] | None = None,
        graph: bool = True,
        weights: Weights | None = None,
        prf: int = 0,
        diverse: bool = True,
    ) -> list[SearchHit]:
        """One search with checked arguments and built filters (for the other services)."""
        self.store.ready()
        weights = weights or self.weights
        if signature:
            weights = replace(weights, structure=weights.plan)
        where = filters.where(self.namespace, quote)
        n = max(3 * k, CANDIDATES)
        rows: dict[str, dict[str, Any]] = {}
        rankings = self._rankings(query, n, mode=mode, where=where, signature=signature, rows=rows)
        fused = fuse(rankings, weights)
        if mode == "hybrid" and (signature or prf) and fused:
            rankings["structure"] = self._structure_signal(
                fused,
                rankings.get("structure", []),
                signature=signature,
                prf=prf,
                n=n,
                where=where,
            )
            fused = fuse(rankings, weights)
        if graph and mode == "hybrid" and fused:
            neighbours = self.store.graph(self.namespace).neighbours([f.id for f in fused[:5]])
            if neighbours:
                rankings["graph"] = graph_ranking(fused[:5], neighbours)
                fused = fuse(rankings, weights)
        hits: list[SearchHit] = []
        served: dict[str, Skill | None] = {}
        allowed = set(filters.status or skill_statuses())
        # hydrate from SQL page by page (records are whole documents, read without their steps)
        # until k hits are left after near-duplicates are collapsed
        page = k + 5
        for start in range(0, len(fused), page):
            chunk = fused[start : start + page]
            records = self.records.get_any([f.id for f in chunk], steps=False)
            for entry in chunk:
                item = records.get(entry.id)
                if item is None:
                    continue  # deleted, or not committed yet: never visible
                if isinstance(item, Experience) and item.merged_into is not None:
                    continue  # folded into another record by admission control (via the graph)
                if isinstance(item, Skill):
                    if item.name in served:
                        continue  # this skill was served already, by a better-ranked version
                    served[item.name] = self._served(item.name, allowed)
                    item = served[item.name] or item
                    if item.status.value not in allowed:
                        continue
                kind = "experience" if isinstance(item, Experience) else "skill"
                if "graph" in entry.signals and not filters.accepts(
                    item.model_dump(mode="json"), kind
                ):
                    continue
                hits.append(hit(item, entry.score, entry.signals))
            hits.sort(key=lambda h: -h.score * (1.1 if h.status == SkillStatus.validated else 1.0))
            if diverse and len(hits) > 1:
                hits = self._collapse(hits, rows)
            if len(hits) >= k:
                break
        return hits[:k]

    def _collapse(self, hits: list[SearchHit], rows: dict[str, dict[str, Any]]) -> list[SearchHit]:
        """Near-duplicates folded into the best of them (:func:`kb.retrieval.collapse_duplicates`):
        same kind, vectors at cosine >= 0.97, and for experiences the same outcome and tools."""
        missing = [h.id for h in hits if h.id not in rows]
        if missing:  # graph neighbours and served skill versions: not among the candidates
            rows.update(self.store.items.rows(missing, ["vector", "sig"]))
        by_id = {h.id: h for h in hits}

        def same_group(a: str, b: str) -> bool:
            x, y = by_id[a], by_id[b]
            if x.kind != y.kind:
                return False
            if x.kind == Kind.skill:
                return True
            return x.outcome == y.outcome and sig_tools(rows[a].get("sig")) == sig_tools(
                rows[b].get("sig")
            )

        vectors = {i: row["vector"] for i, row in rows.items() if row.get("vector") is not None}
        groups = collapse_duplicates([h.id for h in hits], vectors, same_group)
        out = []
        for kept, dropped in groups.items():
            found = by_id[kept]
            if dropped:
                found = found.model_copy(update={"duplicates": [*found.duplicates, *dropped]})
            out.append(found)
        return out

    def _structure_signal(
        self,
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
        items = self.store.items
        pool = [f.id for f in fused[:n]]
        if signature:
            profile = dict.fromkeys(signature, 1.0)
        else:
            top = fused[:prf]
            sigs = items.rows([f.id for f in top], ["sig"])
            profile = prf_profile(
                [(f.score, sig_tools(sigs.get(f.id, {}).get("sig"))) for f in top]
            )
            if profile:
                tokens = docs.signature_tokens(list(profile))
                bm25 = items.text_search(tokens, k=n, where=where, column="sig")
        if not profile:
            return []
        pool += [i for i, _ in bm25 if i not in set(pool)]
        sigs = items.rows(pool, ["sig"])
        candidates = {i: sig_tools(row.get("sig")) for i, row in sigs.items()}
        return structure_ranking(profile, candidates)[:n]

    def _served(self, name: str, allowed: set[str]) -> Skill | None:
        """The version of a skill a search serves: the newest whose status it allows (a
        validated v1 stays served while its v2 is a draft)."""
        versions = [v for v in self.records.skill_versions(name) if v.status.value in allowed]
        return max(versions, key=lambda v: v.version) if versions else None

    # -- outcome-aware ranking -------------------------------------------------------------------
    def outcome_on(self, outcome_aware: bool | None) -> bool:
        """Whether outcome-aware ranking applies (None: once the namespace has enough feedback)."""
        if outcome_aware is not None:
            return outcome_aware
        return self.records.count_events() >= DEFAULT_OUTCOME_RANKING.min_events

    def rerank_outcomes(self, hits: list[SearchHit], outcome_aware: bool | None) -> list[SearchHit]:
        """Apply :func:`kb.retrieval.outcome_factor` to hits when on (see ``outcome_aware``)."""
        if not hits or not self.outcome_on(outcome_aware):
            return hits
        records = self.records.get_any([h.id for h in hits], steps=False)
        out = []
        for h in hits:
            item = records.get(h.id)
            if item is None:
                continue
            factor = outcome_factor(
                item.uses, item.successes, _age_days(item), DEFAULT_OUTCOME_RANKING
            )
            out.append(h.model_copy(update={"score": round(h.score * factor, 6)}))
        return sorted(out, key=lambda h: -h.score)


def hit(item: Experience | Skill, score: float, signals: dict[str, Any]) -> SearchHit:
    """A record as a search hit."""
    if isinstance(item, Experience):
        return SearchHit(
            id=item.id,
            kind=Kind.experience,
            score=round(score, 6),
            title=item.task[:200],
            snippet=(item.strategy or item.final_answer or "")[:300],
            outcome=item.outcome,
            signals=signals,
            attribution=item.attribution,
            provenance=item.provenance,
            record=item.model_dump(mode="json", exclude={"steps"}),
        )
    return SearchHit(
        id=item.id,
        kind=Kind.skill,
        score=round(score, 6),
        title=item.name,
        snippet=item.description[:300],
        status=item.status,
        signals=signals,
        provenance=item.provenance,
        record=item.model_dump(mode="json", exclude={"program"}),
    )


def _age_days(item: Experience | Skill) -> float:
    stamp = item.provenance.created_at if isinstance(item, Experience) else item.updated_at
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return (utcnow() - stamp).total_seconds() / 86_400


__all__ = ["DEFAULT_OUTCOME_RANKING", "Search", "hit"]
