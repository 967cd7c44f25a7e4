"""Experiences of one namespace: add (with admission control), read, change, delete, link, use.

Admission control (Learning to Share): ``admit(..., policy="dedupe" | "novelty")`` merges
near-duplicates into the existing record instead of adding a new one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from kb.errors import Invalid, NotFound
from kb.models import (
    MAX_BATCH,
    Edge,
    Experience,
    ExperienceCreate,
    ExperienceUpdate,
    Outcome,
    choice,
    kind_of,
    new_id,
    signature_of,
    utcnow,
)
from kb.retrieval import multiset_jaccard
from kb.services import Service, coerce
from kb.services.windows import StepWindows
from kb.store import Progress, Store, embed_text
from kb.stores.index import quote
from kb.stores.records import Session

Policy = Literal["admit", "dedupe", "novelty"]
POLICIES: dict[str, tuple[float, float] | None] = {
    "admit": None,
    "dedupe": (0.95, 1.0),
    "novelty": (0.90, 0.8),
}
"""Admission policies: ``(min cosine of meaning, min signature similarity)`` to merge, or None.

``dedupe`` merges only exact-meaning duplicates: cosine >= 0.95 between the embedded texts (task,
strategy, plan, lessons), the identical tool signature and the same outcome. ``novelty`` admits only
what is new: cosine >= 0.90, tool-multiset Jaccard >= 0.8 and the same outcome are merged."""


class AddResult(BaseModel):
    """What an add did: the id of the record and whether it was ``added`` or ``merged``."""

    id: str
    action: Literal["added", "merged"] = "added"


class Usage(BaseModel):
    """An item's usage counts after a feedback event."""

    id: str
    uses: int
    successes: int
    success_rate: float


def check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise Invalid(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")


class Experiences(Service):
    """Experiences of one namespace."""

    def __init__(self, store: Store, namespace: str, windows: StepWindows):
        super().__init__(store, namespace)
        self.windows = windows

    # -- adding ---------------------------------------------------------------------------------
    def new(self, data: ExperienceCreate) -> Experience:
        """A stored form of ``data`` (a new id in this namespace), not written yet."""
        return Experience(
            **data.model_dump(),
            id=new_id("exp"),
            namespace=self.namespace,
            signature=signature_of(data.steps),
            updated_at=utcnow(),
        )

    def add(
        self, experience: ExperienceCreate | Mapping[str, Any], *, policy: Policy = "admit"
    ) -> AddResult:
        """Record one experience; see :meth:`admit` for the policies."""
        check_policy(policy)
        exp = self.new(coerce(ExperienceCreate, experience, "experience"))
        self.store.ready()
        return self._admit([exp], policy)[0]

    def validated(
        self, experiences: Iterable[ExperienceCreate | Mapping[str, Any]]
    ) -> list[Experience]:
        """Every input checked and given an id before anything is written."""
        items = []
        for number, value in enumerate(experiences):
            if number >= MAX_BATCH:
                raise Invalid(f"at most {MAX_BATCH} experiences per call; split the batch")
            items.append(self.new(coerce(ExperienceCreate, value, f"experience {number}")))
        return items

    def admit(
        self,
        experiences: Iterable[ExperienceCreate | Mapping[str, Any]],
        *,
        policy: Policy = "admit",
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
        check_policy(policy)
        items = self.validated(experiences)
        self.store.ready()
        results: list[AddResult] = []
        for start in range(0, len(items), 256):
            chunk = items[start : start + 256]
            results += self._admit(chunk, policy)
            if progress:
                progress(len(chunk))
        return results

    def _admit(self, items: list[Experience], policy: str) -> list[AddResult]:
        thresholds = POLICIES[policy]
        if thresholds is None:
            self.windows.write(items)
            return [AddResult(id=i.id) for i in items]
        min_cos, min_sig = thresholds
        vectors = self.store.embed([embed_text(i) for i in items])
        accepted: list[int] = []
        merges: dict[int, str] = {}
        for pos, (item, vector) in enumerate(zip(items, vectors, strict=True)):
            target = next(
                (
                    items[j].id
                    for j in accepted
                    if items[j].outcome == item.outcome
                    and float(vector @ vectors[j]) >= min_cos
                    and _same_procedure(items[j].signature, item.signature, min_sig)
                ),
                None,
            ) or self._near_duplicate(item, vector, min_cos, min_sig)
            if target is None:
                accepted.append(pos)
            else:
                merges[pos] = target
        self.windows.write([items[j] for j in accepted], vectors=vectors[accepted])
        for pos, target in merges.items():
            self._merge(items[pos], vectors[pos], target)
        return [
            AddResult(id=merges[pos], action="merged") if pos in merges else AddResult(id=item.id)
            for pos, item in enumerate(items)
        ]

    def _near_duplicate(
        self, item: Experience, vector: np.ndarray, min_cos: float, min_sig: float
    ) -> str | None:
        where = (
            f"namespace = {quote(self.namespace)} AND kind = 'experience' AND latest = true "
            f"AND outcome = {quote(item.outcome.value)}"
        )
        for item_id, score in self.store.items.vector_search(vector, k=5, where=where):
            if score < min_cos:
                break
            found = self.records.get_experiences([item_id]).get(item_id)
            if (
                found is not None
                and found.merged_into is None
                and _same_procedure(found.signature, item.signature, min_sig)
            ):
                return item_id
        return None

    def _merge(self, dup: Experience, vector: np.ndarray, target: str) -> None:
        canonical = self.get(target)
        canonical = canonical.model_copy(
            update={
                "count": canonical.count + dup.count,
                "merged_ids": [*canonical.merged_ids, dup.id],
                "updated_at": utcnow(),
            }
        )
        edge = Edge(src=dup.id, dst=canonical.id, kind="merged_into")

        def link(session: Session) -> None:
            self.records.put_edges(session, [edge])
            self.store.bump_graph(session, self.namespace)

        canon_vector = self.store.embed([embed_text(canonical)])[0]
        self.store.write(
            [dup.model_copy(update={"merged_into": canonical.id}), canonical],
            vectors=np.stack([vector, canon_vector]),
            replace=True,
            before_commit=link,
        )

    # -- reading and changing -------------------------------------------------------------------
    def get(self, experience_id: str) -> Experience:
        """The experience with this id (in this namespace)."""
        found = self.records.get_experiences([experience_id])
        if experience_id not in found:
            raise NotFound(f"no experience {experience_id!r} in namespace {self.namespace!r}")
        return found[experience_id]

    def update(
        self, experience_id: str, changes: ExperienceUpdate | Mapping[str, Any]
    ) -> Experience:
        """Change fields of an experience; returns the stored result."""
        patch = coerce(ExperienceUpdate, changes, "update")
        current = self.get(experience_id)
        merged = current.model_dump() | patch.model_dump(exclude_unset=True)
        merged["updated_at"] = utcnow()
        updated = coerce(Experience, merged, "experience")
        self.store.ready()
        self.store.write([updated], replace=True)
        return updated

    def delete(self, experience_id: str) -> None:
        """Delete an experience, its edges and its events."""
        self.get(experience_id)
        with self.store.writing():
            with self.store.sql.session() as session:
                self.records.delete(session, [experience_id])
                self.store.bump_graph(session, self.namespace)
            self.store.items.delete([experience_id])

    def all(
        self,
        *,
        outcome: Outcome | str | None = None,
        domain: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Experience]:
        """Experiences, newest first, optionally filtered."""
        if not 1 <= limit <= 10_000:
            raise Invalid("limit must be between 1 and 10000")
        return self.records.list_experiences(
            outcome=choice(Outcome, outcome, "outcome").value if outcome else None,
            domain=domain,
            tag=tag,
            limit=limit,
            offset=max(0, offset),
        )

    # -- links and use --------------------------------------------------------------------------
    def add_edge(self, src: str, dst: str, kind: str, *, weight: float = 1.0) -> Edge:
        """Link two items of this namespace (e.g. ``derived_from``, ``repaired_by``)."""
        edge = coerce(Edge, {"src": src, "dst": dst, "kind": kind, "weight": weight}, "edge")
        self.link([edge], check=True)
        return edge

    def link(self, edges: Sequence[Edge], *, check: bool = False) -> None:
        """Store edges between items of this namespace in one transaction."""
        if check:
            for item_id in {i for e in edges for i in (e.src, e.dst)}:
                if not self.records.exists(item_id):
                    raise NotFound(f"no item {item_id!r} in namespace {self.namespace!r}")
        if not edges:
            return
        with self.store.transaction() as session:
            self.records.put_edges(session, edges)
            self.store.bump_graph(session, self.namespace)

    def edges(self, item_id: str, *, kinds: set[str] | None = None) -> list[Edge]:
        """Edges touching an item, both directions."""
        return self.store.graph(self.namespace).edges(item_id, kinds=kinds)

    def feedback(self, item_id: str, *, success: bool, note: str | None = None) -> Usage:
        """Record that an experience or skill was used and whether it helped."""
        kind = kind_of(item_id)
        if kind is None:
            raise Invalid(f"{item_id!r} is not an experience (exp_...) or skill (skl_...) id")
        with self.store.transaction() as session:
            counts = self.records.record_use(session, item_id, success=success, note=note)
        if counts is None:
            raise NotFound(f"no {kind} {item_id!r} in namespace {self.namespace!r}")
        return Usage.model_validate(counts)


def _same_procedure(a: Sequence[str], b: Sequence[str], min_sig: float) -> bool:
    if min_sig >= 1.0:
        return list(a) == list(b)
    return (not a and not b) or multiset_jaccard(a, b) >= min_sig


__all__ = ["POLICIES", "AddResult", "Experiences", "Policy", "Usage", "check_policy"]
