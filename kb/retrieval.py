"""Hybrid retrieval: candidate lists from several signals, fused by weighted reciprocal rank fusion.

Signals:

* ``vector``: cosine similarity of embeddings;
* ``lexical``: BM25 over the full text;
* ``structure``: BM25 over signature tokens (each tool and each consecutive pair of tools), so runs
  that follow the same procedure match even with no word in common (APEX-EM);
* ``graph``: neighbours of the best hits along stored edges (derived_from, repaired_by, ...).

Fused score of an item: ``sum over signals s of w_s / (rrf_k + rank_s)`` (ranks from 1). Every hit
keeps each signal's rank and raw score, so a user can see why it came back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kb.models import SignalScore

Mode = Literal["hybrid", "vector", "lexical"]
MODES: tuple[str, ...] = ("hybrid", "vector", "lexical")
SIGNALS = ("vector", "lexical", "structure", "graph")


@dataclass
class Weights:
    vector: float = 1.0
    lexical: float = 1.0
    structure: float = 0.5
    graph: float = 0.3
    rrf_k: int = 60

    def of(self, signal: str) -> float:
        return float(getattr(self, signal))


@dataclass
class Fused:
    id: str
    score: float
    signals: dict[str, SignalScore] = field(default_factory=dict)


def fuse(rankings: Mapping[str, list[tuple[str, float]]], weights: Weights) -> list[Fused]:
    """Weighted reciprocal rank fusion of ranked ``(id, score)`` lists, best first."""
    fused: dict[str, Fused] = {}
    for signal, ranking in rankings.items():
        weight = weights.of(signal)
        for rank, (item_id, score) in enumerate(ranking, start=1):
            entry = fused.setdefault(item_id, Fused(item_id, 0.0))
            entry.signals[signal] = SignalScore(rank=rank, score=round(float(score), 6))
            entry.score += weight / (weights.rrf_k + rank)
    return sorted(fused.values(), key=lambda f: (-f.score, f.id))


@dataclass
class Filters:
    """Typed keyword filters of a search."""

    kind: str | None = None
    outcome: str | list[str] | None = None
    domain: str | None = None
    tags: list[str] | None = None
    status: list[str] | None = None
    exclude_ids: list[str] = field(default_factory=list)
    exclude_source_ids: list[str] = field(default_factory=list)

    def where(self, namespace: str, quote: Any) -> str:
        """A LanceDB SQL predicate for these filters (values quoted by ``quote``)."""
        parts = [f"namespace = {quote(namespace)}", "latest = true"]
        if self.kind:
            parts.append(f"kind = {quote(self.kind)}")
        outcomes = [self.outcome] if isinstance(self.outcome, str) else self.outcome
        if outcomes:
            parts.append(f"(kind != 'experience' OR outcome IN ({', '.join(map(quote, outcomes))}))")
        if self.domain:
            parts.append(f"domain = {quote(self.domain)}")
        if self.tags:
            parts.append(f"array_has_any(tags, [{', '.join(map(quote, self.tags))}])")
        if self.status:
            parts.append(f"(kind != 'skill' OR status IN ({', '.join(map(quote, self.status))}))")
        if self.exclude_ids:
            parts.append(f"id NOT IN ({', '.join(map(quote, self.exclude_ids))})")
        if self.exclude_source_ids:
            excluded = ", ".join(map(quote, self.exclude_source_ids))
            parts.append(f"(source_id IS NULL OR source_id NOT IN ({excluded}))")
        return " AND ".join(parts)

    def accepts(self, record: Mapping[str, Any], kind: str) -> bool:
        """The same filters applied to a hydrated record (for graph neighbours)."""
        if self.kind and kind != self.kind:
            return False
        outcomes = [self.outcome] if isinstance(self.outcome, str) else self.outcome
        if outcomes and kind == "experience" and record.get("outcome") not in outcomes:
            return False
        if self.domain and record.get("domain") != self.domain:
            return False
        if self.tags and not set(self.tags) & set(record.get("tags") or []):
            return False
        if self.status and kind == "skill" and record.get("status") not in self.status:
            return False
        if record.get("id") in self.exclude_ids:
            return False
        source_id = (record.get("provenance") or {}).get("source_id")
        return not (self.exclude_source_ids and source_id in self.exclude_source_ids)


def graph_ranking(
    seeds: list[Fused], neighbours: Mapping[str, tuple[str, str, float]]
) -> list[tuple[str, float]]:
    """Rank graph neighbours by the fused score of the seed that reached them times edge weight."""
    seed_score = {s.id: s.score for s in seeds}
    scored = [(item, seed_score.get(seed, 0.0) * weight) for item, (seed, _kind, weight) in neighbours.items()]
    return sorted(scored, key=lambda x: -x[1])


def top_signatures(signatures: Iterable[list[str]], limit: int = 3) -> list[str]:
    """Pseudo-relevance feedback: the tool sequence of the best hits, concatenated."""
    out: list[str] = []
    for signature in list(signatures)[:limit]:
        out.extend(signature)
    return out
