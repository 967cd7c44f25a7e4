"""Step windows: the decision points of experiences, a second derived table kept in step with SQL.

One row per decision point (the state before an agent acted), not per raw step, so ``refine``'s
step-level matching stays affordable at scale. The SQL transaction of a write records the new
experiences as pending; the write then builds their windows (in batches) before it returns, so the
first ``refine`` finds them complete. A lossless import (stored vectors, nothing embedded) and a
crash leave them pending, never lost: ``refine`` builds pending windows for up to
``SYNC_BUDGET_S`` seconds and says how many experiences are still pending after that.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

import numpy as np

from kb.models import Experience
from kb.retrieval import step_windows
from kb.services import Service
from kb.store import Item
from kb.stores.index import quote
from kb.stores.records import Session

BUILD_BATCH = 256
"""Experiences whose windows are embedded and written together."""
SYNC_BUDGET_S = 3.0
"""How long a ``refine`` may spend building pending windows before it answers without them."""


class StepWindows(Service):
    """The window table of one namespace."""

    @property
    def _keys(self) -> tuple[str, str]:
        return f"windows:{self.namespace}", f"windows_pending:{self.namespace}"

    def write(
        self,
        items: Sequence[Item],
        *,
        vectors: np.ndarray | None = None,
        replace: bool = False,
        windowed: set[str] | None = None,
        new: int | None = None,
        defer: bool = False,
        before_commit: Callable[[Session], None] | None = None,
    ) -> None:
        """The record write path (one transaction), plus windows for the experiences in
        ``windowed`` (default: all of them): marked pending in the same transaction, then built
        in batches before this returns (left pending with ``defer``: a restore embeds nothing).
        ``new`` is how many of the items are new records (default: all)."""
        if not items:
            if before_commit is not None:
                with self.store.transaction() as session:
                    before_commit(session)
            return
        with_steps = [i.id for i in items if i.steps and (windowed is None or i.id in windowed)]
        state_key, pending_key = self._keys
        sql, model = self.store.sql, self.store.model_name
        added = len(items) if new is None else new

        def mark(session: Session) -> None:
            pending = json.loads(sql.get_meta(pending_key) or "[]")
            state = json.loads(sql.get_meta(state_key) or "{}")
            values = {pending_key: json.dumps(pending + with_steps)}
            if state.get("model") in (None, model):
                count = int(state.get("count", 0)) + added
                values[state_key] = json.dumps({"model": model, "count": count})
            sql.set_meta(values, session)
            if before_commit is not None:
                before_commit(session)

        self.store.write(items, vectors=vectors, replace=replace, before_commit=mark)
        if with_steps and not defer:
            by_id = {i.id: i for i in items if isinstance(i, Experience)}
            self.delete(with_steps)
            for start in range(0, len(with_steps), BUILD_BATCH):
                chunk = with_steps[start : start + BUILD_BATCH]
                self._build([by_id[i] for i in chunk])
                self._done(chunk)

    def _build(self, exps: Sequence[Experience]) -> int:
        specs = [(exp, w) for exp in exps for w in step_windows(exp.task, exp.steps)]
        if not specs:
            return 0
        self.store.check_model()
        # Straight to the model: window texts are many and never re-embedded, so not cached.
        vectors = self.store.embedder.inner.encode([w[2] for _, w in specs])
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
                "model": self.store.model_name,
                "dim": int(vectors.shape[1]),
                "vector": vector.astype(np.float32),
            }
            for (exp, (step, has_error, text, payload)), vector in zip(specs, vectors, strict=True)
        ]
        with self.store.writing():
            self.store.windows.upsert(rows)
        return len(rows)

    def _done(self, ids: Sequence[str]) -> None:
        _, pending_key = self._keys
        with self.store.writing():
            done = set(ids)
            pending = json.loads(self.store.sql.get_meta(pending_key) or "[]")
            self.store.sql.set_meta(
                {pending_key: json.dumps([i for i in pending if i not in done])}
            )

    def delete(self, exp_ids: Sequence[str]) -> None:
        """Drop the windows of these experiences."""
        with self.store.writing():
            self.store.windows.delete(list(exp_ids))

    def sync(self, budget_s: float | None = None) -> int:
        """Repair the window table: pending writes after a crash or a lossless import, other
        writers, a new model. With ``budget_s``, stop starting new batches after that many
        seconds; returns how many experiences are still pending (0: complete)."""
        state_key, pending_key = self._keys
        sql = self.store.sql
        state = json.loads(sql.get_meta(state_key) or "{}")
        if state.get("model") not in (None, self.store.model_name):
            self.rebuild()
            return 0
        started = time.monotonic()

        def out_of_time() -> bool:
            return budget_s is not None and time.monotonic() - started >= budget_s

        pending = json.loads(sql.get_meta(pending_key) or "[]")
        for start in range(0, len(pending), BUILD_BATCH):
            if out_of_time():
                return len(pending) - start
            chunk = pending[start : start + BUILD_BATCH]
            found = self.records.get_experiences(chunk)
            self.delete(list(found))
            self._build([e for e in found.values() if e.merged_into is None])
            self._done(chunk)
        total = self.records.count_experiences()
        if int(state.get("count", 0)) != total:
            sql_ids = self.records.live_experience_ids()
            have = self.store.windows.distinct("exp_id", f"namespace = {quote(self.namespace)}")
            missing = sorted(sql_ids - have)
            self.delete(sorted(have - sql_ids))
            for start in range(0, len(missing), BUILD_BATCH):
                if out_of_time():
                    return len(missing) - start
                chunk = self.records.get_experiences(missing[start : start + BUILD_BATCH])
                self._build([e for e in chunk.values() if e.steps and e.merged_into is None])
            sql.set_meta({state_key: json.dumps({"model": self.store.model_name, "count": total})})
        return 0

    def rebuild(self) -> int:
        """Rebuild this namespace's step windows from SQL; returns how many were written."""
        state_key, pending_key = self._keys
        with self.store.writing():  # this namespace's rows only: others keep theirs
            self.store.windows.delete([self.namespace], column="namespace")
        written = total = 0
        batch: list[Experience] = []
        for exp in self.records.iter_experiences():
            total += 1
            if exp.steps and exp.merged_into is None:
                batch.append(exp)
            if len(batch) >= 256:
                written += self._build(batch)
                batch = []
        written += self._build(batch)
        self.store.sql.set_meta(
            {
                state_key: json.dumps({"model": self.store.model_name, "count": total}),
                pending_key: "[]",
            }
        )
        with self.store.writing():
            self.store.windows.optimize()
        return written


__all__ = ["BUILD_BATCH", "SYNC_BUDGET_S", "StepWindows"]
