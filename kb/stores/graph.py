"""The in-memory graph over SQL edges (networkx), safe to share between threads."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from kb.models import Edge

if TYPE_CHECKING:
    import networkx as nx


class Graph:
    """A directed multigraph of item ids; edges carry ``kind`` and ``weight``."""

    def __init__(self, edges: Iterable[Edge] = ()):
        import networkx as nx  # on first use: commands that never walk the graph stay light

        self._g: nx.MultiDiGraph = nx.MultiDiGraph()
        self._lock = threading.RLock()
        self.add(edges)

    def add(self, edges: Iterable[Edge]) -> None:
        with self._lock:
            for edge in edges:
                self._g.add_edge(edge.src, edge.dst, key=edge.kind, weight=edge.weight)

    def remove_edge(self, src: str, dst: str, kind: str) -> None:
        with self._lock:
            if self._g.has_edge(src, dst, key=kind):
                self._g.remove_edge(src, dst, key=kind)

    def remove_nodes(self, ids: Iterable[str]) -> None:
        with self._lock:
            self._g.remove_nodes_from(list(ids))

    def edges(self, item_id: str, *, kinds: set[str] | None = None) -> list[Edge]:
        """Edges touching ``item_id``, both directions."""
        with self._lock:
            if item_id not in self._g:
                return []
            found = [
                Edge(src=s, dst=d, kind=k, weight=w)
                for s, d, k, w in self._g.out_edges(item_id, keys=True, data="weight")
            ] + [
                Edge(src=s, dst=d, kind=k, weight=w)
                for s, d, k, w in self._g.in_edges(item_id, keys=True, data="weight")
            ]
        return [e for e in found if kinds is None or e.kind in kinds]

    def neighbours(
        self, seeds: Iterable[str], *, kinds: set[str] | None = None, depth: int = 1
    ) -> dict[str, tuple[str, str, float]]:
        """Items reachable from ``seeds`` within ``depth`` hops (either direction).

        Returns ``{id: (seed, edge kind, weight product)}`` for items that are not seeds.
        """
        seeds = list(seeds)
        found: dict[str, tuple[str, str, float]] = {}
        frontier = [(s, s, 1.0) for s in seeds]
        seen = set(seeds)
        for _ in range(depth):
            nxt: list[tuple[str, str, float]] = []
            for node, seed, weight in frontier:
                for edge in self.edges(node, kinds=kinds):
                    other = edge.dst if edge.src == node else edge.src
                    if other in seen:
                        continue
                    seen.add(other)
                    found[other] = (seed, edge.kind, weight * edge.weight)
                    nxt.append((other, seed, weight * edge.weight))
            frontier = nxt
        return found

    def __len__(self) -> int:
        with self._lock:
            return int(self._g.number_of_edges())
