"""Experiences of one namespace: add (with admission control), read, change, delete, link, use.

Admission control (Learning to Share): ``admit(..., policy="dedupe" | "novelty")`` merges
near-duplicates into the existing record instead of adding a new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, cast

import numpy as np
from pydantic import BaseModel

from kb.errors import Invalid, NotFound
from kb.limits import check_record
from kb.models import (
    Edge,
    Experience,
    ExperienceCreate,
    ExperienceUpdate,
    Outcome,
    Step,
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
    """What an add did: the id of the record and whether it was ``added``, ``merged`` into
    another record, or ``unchanged`` (the same idempotency key or source key was stored before)."""

    id: str
    action: Literal["added", "merged", "unchanged", "updated"] = "added"


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
        self,
        experience: ExperienceCreate | Mapping[str, Any],
        *,
        policy: Policy = "admit",
        idempotency_key: str | None = None,
    ) -> AddResult:
        """Record one experience; see :meth:`admit` for the policies. A retry with the same
        ``idempotency_key`` stores nothing and answers ``unchanged`` with the first id.

        Concurrent calls in one process (the MCP server's threads) share one write: one
        embedding batch, one transaction, one index commit (:class:`kb.store.GroupCommit`)."""
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
            raise Invalid("idempotency_key must be 1 to 200 characters")
        check_policy(policy)
        self.validated([experience])  # a bad input fails here, alone, not in the group
        key = f"idem:{idempotency_key}" if idempotency_key else None
        group = self.store.group(f"experiences:{self.namespace}")
        return cast(AddResult, group.submit((experience, policy, key), self._add_group))

    def _add_group(
        self, requests: list[tuple[ExperienceCreate | Mapping[str, Any], Policy, str | None]]
    ) -> list[AddResult]:
        """One write for the queued ``add`` calls (one per policy present, in order)."""
        results: list[AddResult | None] = [None] * len(requests)
        for policy in dict.fromkeys(p for _, p, _ in requests):
            positions = [n for n, (_, p, _) in enumerate(requests) if p == policy]
            added = self.admit(
                [requests[n][0] for n in positions],
                policy=policy,
                keys=[requests[n][2] for n in positions],
            )
            for n, result in zip(positions, added, strict=True):
                results[n] = result
        return [r for r in results if r is not None]

    def by_run_id(self, run_id: str) -> str | None:
        """The id of the experience recorded under ``run_id`` (its idempotency key), if any:
        what links a recorded run to its gate session."""
        key = f"idem:{run_id}"
        return self.records.by_source_key([key]).get(key)

    def validated(
        self, experiences: Iterable[ExperienceCreate | Mapping[str, Any]]
    ) -> list[Experience]:
        """Every input checked and given an id before anything is written."""
        items = []
        step_chars = self.store.settings.max_step_chars
        for number, value in enumerate(experiences):
            raw = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
            check_record(raw, what=f"experience {number}", step_chars=step_chars)
            items.append(self.new(coerce(ExperienceCreate, value, f"experience {number}")))
        return items

    def admit(
        self,
        experiences: Iterable[ExperienceCreate | Mapping[str, Any]],
        *,
        policy: Policy = "admit",
        keys: Sequence[str | None] | None = None,
        update: bool = False,
        progress: Progress | None = None,
    ) -> list[AddResult]:
        """Record experiences in one transaction under an admission policy; one result per
        input, in order.

        Args:
            policy: ``admit`` adds every input as a new record. ``dedupe`` merges an input into an
                existing record (in the store or earlier in the batch) with the same meaning
                (cosine >= 0.95), the same tool signature and the same outcome. ``novelty`` merges
                anything close enough (cosine >= 0.90, signature Jaccard >= 0.8, same outcome).
                A merge keeps the input as its own record (readable by id, hidden from search),
                links it ``merged_into`` the existing one, and adds to that one's ``count`` and
                ``merged_ids``: nothing is lost.
            keys: a source key per input (None: the input's own ``provenance.source_key``). An
                input whose key is stored already is ``unchanged``, so a retried write or
                import adds nothing twice.
            update: an input whose key is stored with other content becomes a new version of
                that record (the earlier content stays in its history).
        Returns:
            ``AddResult(id, action)`` per input: ``added``, ``merged`` (the id it was merged
            into) or ``unchanged`` (the id already stored under its key).
        """
        check_policy(policy)
        items = self.validated(experiences)
        if keys is not None:
            if len(keys) != len(items):
                raise Invalid(f"{len(keys)} keys for {len(items)} experiences")
            items = [
                i.model_copy(
                    update={"provenance": i.provenance.model_copy(update={"source_key": k})}
                )
                if k
                else i
                for i, k in zip(items, keys, strict=True)
            ]
        self.store.ready()
        results: list[AddResult | None] = [None] * len(items)
        stored = self.records.by_source_key(
            [i.provenance.source_key for i in items if i.provenance.source_key]
        )
        updates: list[tuple[Experience, Experience]] = []  # (current, replacement)
        fresh: list[int] = []
        first: dict[str, str] = {}
        for pos, item in enumerate(items):
            key = item.provenance.source_key
            if key and key in stored:
                current = self.records.get_experiences([stored[key]], deleted=True)[stored[key]]
                if update and content_digest(current) != content_digest(item):
                    updates.append((current, _replacement(current, item)))
                    results[pos] = AddResult(id=current.id, action="updated")
                else:
                    results[pos] = AddResult(id=current.id, action="unchanged")
            elif key and key in first:
                results[pos] = AddResult(id=first[key], action="unchanged")
            else:
                if key:
                    first[key] = item.id
                fresh.append(pos)
        candidates = [items[p] for p in fresh] + [new for _, new in updates]
        vectors = self._embed(candidates, progress)
        accepted, merges = self._decide(candidates[: len(fresh)], vectors[: len(fresh)], policy)
        canonical: dict[str, Experience] = {}
        merged: list[Experience] = []
        edges: list[Edge] = []
        for pos, target in merges.items():
            dup = candidates[pos]
            base = canonical.get(target) or next(
                (candidates[j] for j in accepted if candidates[j].id == target), None
            )
            base = base or self.get(target)
            canonical[target] = base.model_copy(
                update={
                    "count": base.count + dup.count,
                    "merged_ids": [*base.merged_ids, dup.id],
                    "updated_at": utcnow(),
                }
            )
            merged.append(dup.model_copy(update={"merged_into": target}))
            edges.append(Edge(src=dup.id, dst=target, kind="merged_into"))
        # records of this batch that others merged into carry the merge counts
        kept = [canonical.get(candidates[j].id, candidates[j]) for j in accepted]
        kept_ids = {c.id for c in kept}
        replaced = [c for c in canonical.values() if c.id not in kept_ids]  # stored before
        writes = kept + [new for _, new in updates] + merged + replaced
        by_id = {c.id: pos for pos, c in enumerate(candidates)}
        write_vectors = (
            np.stack(
                [
                    vectors[by_id[w.id]] if w.id in by_id else self.store.embed([embed_text(w)])[0]
                    for w in writes
                ]
            )
            if writes
            else None
        )

        def history(session: Session) -> None:
            for current, _ in updates:
                self.records.keep_version(session, current)
            if edges:
                self.records.put_edges(session, edges)
                self.store.bump_graph(session, self.namespace)

        self.windows.write(
            writes,
            vectors=write_vectors,
            replace=bool(updates or merged or replaced),
            windowed={e.id for e in kept} | {new.id for _, new in updates},
            new=len(kept) + len(merged),
            before_commit=history,
        )
        for pos, item_pos in enumerate(fresh):
            merged_into = merges.get(pos)
            results[item_pos] = (
                AddResult(id=merged_into, action="merged")
                if merged_into
                else AddResult(id=items[item_pos].id)
            )
        return [r for r in results if r is not None]

    def _embed(self, items: list[Experience], progress: Progress | None) -> np.ndarray:
        """The items' vectors, embedded in chunks so that a progress bar moves."""
        if not items:
            return np.zeros((0, 1), np.float32)
        parts = []
        for start in range(0, len(items), 256):
            chunk = items[start : start + 256]
            parts.append(self.store.embed([embed_text(i) for i in chunk]))
            if progress:
                progress(len(chunk))
        return np.concatenate(parts)

    def _decide(
        self, items: list[Experience], vectors: np.ndarray, policy: str
    ) -> tuple[list[int], dict[int, str]]:
        """Which items to keep, and which to merge into which record (policy thresholds)."""
        thresholds = POLICIES[policy]
        if thresholds is None:
            return list(range(len(items))), {}
        min_cos, min_sig = thresholds
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
        return accepted, merges

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

    # -- reading and changing -------------------------------------------------------------------
    def get(self, experience_id: str) -> Experience:
        """The experience with this id (in this namespace)."""
        found = self.records.get_experiences([experience_id])
        if experience_id not in found:
            if self.records.get_experiences([experience_id], deleted=True):
                raise NotFound(
                    f"experience {experience_id!r} is deleted; `kb restore {experience_id}` "
                    "brings it back"
                )
            raise NotFound(f"no experience {experience_id!r} in namespace {self.namespace!r}")
        return found[experience_id]

    def update(
        self, experience_id: str, changes: ExperienceUpdate | Mapping[str, Any]
    ) -> Experience:
        """Change fields of an experience: the result is its next version, and the previous
        content stays readable in :meth:`history`. One transaction."""
        raw = changes.model_dump(mode="json") if isinstance(changes, BaseModel) else changes
        check_record(raw, what="the update", step_chars=self.store.settings.max_step_chars)
        patch = coerce(ExperienceUpdate, changes, "update")
        current = self.get(experience_id)
        updated = _replacement(current, patch.model_dump(exclude_unset=True))
        self.store.ready()

        def keep(session: Session) -> None:
            self.records.keep_version(session, current)

        self.windows.write([updated], replace=True, new=0, before_commit=keep)
        return updated

    def history(self, experience_id: str) -> list[Experience]:
        """Every version of an experience, oldest first, the current one (or the tombstoned
        one) last."""
        current = self.records.get_experiences([experience_id], deleted=True)
        if experience_id not in current:
            raise NotFound(f"no experience {experience_id!r} in namespace {self.namespace!r}")
        return [*self.records.versions(experience_id), current[experience_id]]

    def delete(self, experience_id: str) -> Experience:
        """Tombstone an experience: search and lists hide it, :meth:`restore` brings it back,
        :meth:`purge` removes it for good."""
        tombstone = self.get(experience_id).model_copy(update={"deleted_at": utcnow()})
        with self.store.transaction() as session:
            self.records.put(session, [tombstone], indexed=True)
            self.store.bump_graph(session, self.namespace)
        self.store.unindex(self.namespace, [experience_id])
        return tombstone

    def restore(self, experience_id: str) -> Experience:
        """Undo :meth:`delete`."""
        found = self.records.get_experiences([experience_id], deleted=True)
        if experience_id not in found:
            raise NotFound(f"no experience {experience_id!r} in namespace {self.namespace!r}")
        if found[experience_id].deleted_at is None:
            raise Invalid(f"experience {experience_id!r} is not deleted")
        restored = found[experience_id].model_copy(update={"deleted_at": None})
        self.store.ready()
        self.windows.write([restored], replace=True, new=0)
        return restored

    def purge(self, ids: Sequence[str] | None = None) -> list[str]:
        """Remove tombstoned experiences for good (all of them, or these): their content, earlier
        versions, edges, events, index rows and windows, and rewrite the files so that nothing
        of them stays on disk (for a leaked secret). Returns the ids purged."""
        tombstoned = set(self.records.tombstoned())
        if ids is not None:
            live = [i for i in ids if i not in tombstoned]
            if live:
                raise Invalid(
                    f"{live[0]!r} is not deleted; `kb delete {live[0]}` first (purge removes only "
                    "tombstoned records)"
                )
        targets = sorted(tombstoned if ids is None else set(ids))
        if not targets:
            return []
        with self.store.transaction() as session:
            self.records.purge(session, targets)
            self.store.bump_graph(session, self.namespace)
        self.store.unindex(self.namespace, targets)
        self.store.vacuum()
        return targets

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


CONTENT_FIELDS = frozenset(
    {
        "task",
        "agent",
        "domain",
        "tags",
        "outcome",
        "score",
        "strategy",
        "plan",
        "steps",
        "final_answer",
        "ground_truth",
        "lessons",
        "artifacts",
        "gold_actions",
    }
)


def content_digest(exp: ExperienceCreate) -> str:
    """A hash of what an experience says (not when or how it was stored)."""
    body = exp.model_dump(mode="json", include=set(CONTENT_FIELDS))
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _replacement(current: Experience, changes: ExperienceCreate | Mapping[str, Any]) -> Experience:
    """The next version of ``current`` with ``changes`` (an update, or a changed re-import)."""
    if isinstance(changes, ExperienceCreate):
        fields = changes.model_dump(include=set(CONTENT_FIELDS))
        if changes.attribution is not None:
            fields["attribution"] = changes.attribution
    else:
        fields = dict(changes)
    merged = current.model_dump() | fields
    merged.update(version=current.version + 1, updated_at=utcnow(), deleted_at=None)
    merged["signature"] = signature_of(
        [s if isinstance(s, Step) else Step.model_validate(s) for s in merged.get("steps") or []]
    )
    return coerce(Experience, merged, "experience")


def _same_procedure(a: Sequence[str], b: Sequence[str], min_sig: float) -> bool:
    if min_sig >= 1.0:
        return list(a) == list(b)
    return (not a and not b) or multiset_jaccard(a, b) >= min_sig


__all__ = [
    "POLICIES",
    "AddResult",
    "Experiences",
    "Policy",
    "Usage",
    "check_policy",
    "content_digest",
]
